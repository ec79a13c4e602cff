//! Nextcloud Mail accounts, logging in with an app password.

use std::collections::BTreeMap;

use reconciler_proto::mailcow::markers;

use super::*;
use crate::desired::DesiredState;
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::{Observed, ObservedNextcloudAccount};

/// A Nextcloud account with the address, login and server we would give
/// it, which a provisioning config did not make.
pub(super) fn is_lookalike(account: &ObservedNextcloudAccount, email: &str, login: &str) -> bool {
    account.email == email
        && account.imap_user == login
        && account.configured_server
        && !account.provisioned
}

/// Nextcloud Mail accounts. An account is ours by the ledger's account id;
/// email + IMAP user + IMAP host identify it only after a crash left an
/// intent without an id. The account's password is an app password secret
/// that exists only in memory during a run, so every create or re-key
/// comes with an app password create or rotate in the same plan.
pub(super) fn plan_nextcloud_accounts(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    owned_app_passwords: &BTreeMap<LedgerKey, i64>,
    scope: &Scope,
    plan: &mut Plan,
) {
    let keys = scoped_keys(
        desired
            .nextcloud_accounts
            .iter()
            .map(|(k, d)| (k, d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return;
    }
    let Some(users) = &observed.nextcloud else {
        if let Some(why) = observed.unavailable(Resource::NextcloudAccount) {
            plan.hold(Resource::NextcloudAccount, "", why);
        }
        return;
    };
    let secret_step =
        |plan: &mut Plan, key: &LedgerKey| secret_step(plan, desired, owned_app_passwords, key);
    for key in keys {
        let Some((user, email)) = keys::parse_nextcloud_account(key) else {
            continue;
        };
        let want = desired.nextcloud_accounts.get(key);
        let row = ledger.get(key).copied();
        let accounts = users.get(user).map(Vec::as_slice).unwrap_or_default();
        let login = want.map_or(email, |w| w.login.as_str());
        let app_password_key = want.map_or_else(
            || keys::app_password(email, &markers::app_password_name(user, email)),
            |w| w.app_password_key.clone(),
        );
        let by_id = row
            .and_then(|r| r.remote_id.parse::<i64>().ok())
            .and_then(|id| accounts.iter().find(|a| a.id == id));
        // Same address, login and server: ours only if the ledger holds an
        // intent without an id (a crash right after occ created it).
        let lookalike = accounts.iter().find(|a| is_lookalike(a, email, login));
        let (username, groups) = match (want, row) {
            (Some(d), _) => (d.user.clone(), d.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => continue,
        };
        let step = |action, id: i64, reason: &str| Step {
            resource: Resource::NextcloudAccount,
            key: key.clone(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::NextcloudAccount {
                user: user.to_owned(),
                email: email.to_owned(),
                login: login.to_owned(),
                id,
                app_password_key: app_password_key.clone(),
            },
            reason: reason.to_owned(),
        };
        let state = row.map(|r| r.state);
        let recovered = match (state, by_id, row) {
            (Some(LedgerState::Intent), None, Some(r)) if r.remote_id.is_empty() => lookalike,
            _ => None,
        };
        match (want, state) {
            (_, Some(LedgerState::Foreign)) if want.is_none() => plan.steps.push(step(
                Action::Forget,
                0,
                "not granted any more; a person's account stays",
            )),
            (_, Some(LedgerState::Foreign)) => {}
            (Some(_), None) if lookalike.is_some() => plan.steps.push(step(
                Action::RecordForeign,
                lookalike.map_or(0, |a| a.id),
                "the user already has an account for this mailbox",
            )),
            (Some(_), _) => {
                if let Some(found) = recovered {
                    // Created by an interrupted run: ours, but its password
                    // is unknown. The re-key records it as created.
                    if secret_step(plan, &app_password_key) {
                        plan.steps.push(step(
                            Action::Rekey,
                            found.id,
                            "created by an interrupted run; re-key",
                        ));
                    }
                } else if let Some(account) = by_id {
                    if state == Some(LedgerState::Intent) {
                        // A re-key that did not happen last time.
                        if secret_step(plan, &app_password_key) {
                            plan.steps.push(step(
                                Action::Rekey,
                                account.id,
                                "re-key that did not complete",
                            ));
                        }
                    } else if creates(plan, &app_password_key) {
                        // The app password was lost (deleted in Mailcow):
                        // its re-creation is planned; hand the new secret over.
                        plan.steps.push(step(
                            Action::Rekey,
                            account.id,
                            "app password was re-created; rotate",
                        ));
                    }
                } else if observed.nextcloud_unknown_users.contains(user) {
                    // Creating would fail every sweep (and rotate an app
                    // password each time); wait until the user exists.
                    plan.warnings.push(format!(
                        "Nextcloud has no user {user} yet (never logged in?); their Mail account for {email} waits"
                    ));
                } else if secret_step(plan, &app_password_key) {
                    plan.steps.push(step(Action::Create, 0, "granted by group"));
                } else {
                    plan.warnings.push(format!(
                        "no app password can be made for {user}'s Nextcloud account on {email}"
                    ));
                }
            }
            (None, Some(_)) => match by_id.or(recovered) {
                Some(account) => {
                    plan.steps
                        .push(step(Action::Delete, account.id, "no longer granted"))
                }
                None => plan.steps.push(step(Action::Forget, 0, "already gone")),
            },
            (None, None) => {}
        }
    }
}

/// Whether the plan creates (or rotates) the app password `key` in this run.
pub(super) fn creates(plan: &Plan, key: &LedgerKey) -> bool {
    plan.steps.iter().any(|s| {
        s.resource == Resource::AppPassword
            && &s.key == key
            && matches!(s.action, Action::Create | Action::Rotate)
    })
}

/// Makes sure this run produces a secret for the app password `key`: it is
/// being created, or (when it exists and the ledger says it is ours) it is
/// rotated. False when neither is possible.
pub(super) fn secret_step(
    plan: &mut Plan,
    desired: &DesiredState,
    owned_app_passwords: &BTreeMap<LedgerKey, i64>,
    key: &LedgerKey,
) -> bool {
    if creates(plan, key) {
        return true;
    }
    let Some((mailbox, name)) = keys::parse_app_password(key) else {
        return false;
    };
    let (Some(want), Some(id)) = (desired.app_passwords.get(key), owned_app_passwords.get(key))
    else {
        return false;
    };
    plan.steps.push(Step {
        resource: Resource::AppPassword,
        key: key.clone(),
        action: Action::Rotate,
        username: want.user.clone(),
        groups: want.groups.clone(),
        target: Target::AppPassword {
            mailbox: mailbox.to_owned(),
            name: name.to_owned(),
            id: *id,
            protocols: want.protocols.clone(),
        },
        reason: "its secret is needed for a Nextcloud account".into(),
    });
    true
}
