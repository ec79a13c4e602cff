use std::collections::{BTreeMap, BTreeSet};

use super::*;
use reconciler_proto::mailcow::markers;

use crate::desired::DesiredState;
use crate::desired::{Alias, AppPassword, MailboxAcl, NextcloudAccount, SenderAcl, SogoDelegation};
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::{Observed, ObservedAlias, ObservedAppPassword, Unavailable};
use crate::observed::{
    ObservedNextcloudAccount, ObservedOwnerAcls, ObservedSenderAcl, ObservedSogoOwner,
};

const ALICE: &str = "alice@example.com";
const INFO: &str = "info@example.com";
const NAME: &str = "authentik-sync:alice:info@example.com";

fn desired_alice() -> DesiredState {
    let mut d = DesiredState::default();
    d.sender_acls.insert(
        keys::sender_acl(ALICE, INFO),
        SenderAcl {
            login: ALICE.into(),
            send_as: INFO.into(),
            user: "alice".into(),
            groups: crate::group_set::GroupSet::from(["g1"]),
        },
    );
    d.app_passwords.insert(
        keys::app_password(INFO, NAME),
        AppPassword {
            mailbox: INFO.into(),
            name: NAME.into(),
            user: "alice".into(),
            protocols: vec!["imap_access".into(), "smtp_access".into()],
            groups: crate::group_set::GroupSet::from(["g1"]),
        },
    );
    d
}

fn observed(send_as: &[&str], app_passwords: Vec<ObservedAppPassword>) -> Observed {
    Observed {
        sender_acls: BTreeMap::from([(
            ALICE.to_string(),
            ObservedSenderAcl {
                mailbox_exists: true,
                send_as: send_as.iter().map(|s| s.to_string()).collect(),
                implicitly_allowed: BTreeSet::from([ALICE.to_string()]),
            },
        )]),
        app_passwords: BTreeMap::from([(INFO.to_string(), app_passwords)]),
        aliases: Some(BTreeMap::new()),
        mailbox_acls: BTreeMap::new(),
        sogo: None,
        nextcloud: None,
        nextcloud_unknown_users: BTreeSet::new(),
        matrix: None,
        stalwart: None,
        unavailable: BTreeMap::new(),
        subject_errors: BTreeMap::new(),
    }
}

fn ours(id: i64) -> ObservedAppPassword {
    ObservedAppPassword {
        id,
        mailbox: INFO.into(),
        name: NAME.into(),
        active: true,
        protocols: BTreeSet::from(["imap_access".into(), "smtp_access".into()]),
    }
}

fn row(resource: Resource, key: &LedgerKey, state: LedgerState, remote_id: &str) -> LedgerRow {
    LedgerRow {
        resource: resource.as_str().into(),
        key: key.clone(),
        state,
        username: "alice".into(),
        groups: crate::group_set::GroupSet::from(["g1"]),
        remote_id: remote_id.into(),
    }
}

fn actions(plan: &Plan) -> Vec<(Resource, Action)> {
    plan.steps.iter().map(|s| (s.resource, s.action)).collect()
}

#[test]
fn grants_are_created_when_missing() {
    let p = plan(
        &desired_alice(),
        &observed(&[], vec![]),
        &[],
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        actions(&p),
        vec![
            (Resource::SenderAcl, Action::Create),
            (Resource::AppPassword, Action::Create)
        ]
    );
}

#[test]
fn in_sync_world_plans_nothing() {
    let ledger = vec![
        row(
            Resource::SenderAcl,
            &keys::sender_acl(ALICE, INFO),
            LedgerState::Created,
            "",
        ),
        row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        ),
    ];
    let p = plan(
        &desired_alice(),
        &observed(&[INFO], vec![ours(7)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert!(p.steps.is_empty(), "{p:#?}");
}

#[test]
fn leaving_removes_only_what_we_created() {
    let ledger = vec![
        row(
            Resource::SenderAcl,
            &keys::sender_acl(ALICE, INFO),
            LedgerState::Created,
            "",
        ),
        row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        ),
    ];
    let mut human = ours(8);
    human.name = "my phone".into();
    let obs = observed(&[INFO, "sales@example.com"], vec![ours(7), human]);
    let p = plan(
        &DesiredState::default(),
        &obs,
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        actions(&p),
        vec![
            (Resource::SenderAcl, Action::Delete),
            (Resource::AppPassword, Action::Delete)
        ]
    );
    assert!(matches!(
        p.steps[1].target,
        Target::AppPassword { id: 7, .. }
    ));
}

#[test]
fn a_persons_entry_is_recorded_foreign_and_never_removed() {
    let obs = observed(&[INFO], vec![ours(7)]);
    let p = plan(&desired_alice(), &obs, &[], &Scope::All, &Guards::default());
    assert_eq!(p.steps[0].action, Action::RecordForeign);

    let ledger = vec![row(
        Resource::SenderAcl,
        &keys::sender_acl(ALICE, INFO),
        LedgerState::Foreign,
        "",
    )];
    let p = plan(
        &DesiredState::default(),
        &obs,
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert!(
        p.steps
            .iter()
            .all(|s| !(s.resource == Resource::SenderAcl && s.action == Action::Delete))
    );
}

#[test]
fn implicitly_allowed_send_as_does_not_loop() {
    let mut d = DesiredState::default();
    d.sender_acls.insert(
        keys::sender_acl(ALICE, ALICE),
        SenderAcl {
            login: ALICE.into(),
            send_as: ALICE.into(),
            user: "alice".into(),
            groups: crate::group_set::GroupSet::new(),
        },
    );
    let p = plan(
        &d,
        &observed(&[], vec![]),
        &[],
        &Scope::All,
        &Guards::default(),
    );
    assert!(p.steps.is_empty());
}

#[test]
fn removals_are_held_when_authentik_looks_wrong() {
    let ledger = vec![row(
        Resource::SenderAcl,
        &keys::sender_acl(ALICE, INFO),
        LedgerState::Created,
        "",
    )];
    let guards = Guards {
        allow_removals: false,
        hold_reason: "no users".into(),
        ..Guards::default()
    };
    let p = plan(
        &DesiredState::default(),
        &observed(&[INFO], vec![]),
        &ledger,
        &Scope::All,
        &guards,
    );
    assert!(p.steps.is_empty());
    assert!(p.warnings[0].contains("held"));
}

#[test]
fn removals_tied_to_an_invalid_group_are_held() {
    let ledger = vec![row(
        Resource::SenderAcl,
        &keys::sender_acl(ALICE, INFO),
        LedgerState::Created,
        "",
    )];
    let mut d = DesiredState::default();
    d.invalid_groups
        .insert("g1".into(), "group `g1`: unknown key".into());
    let p = plan(
        &d,
        &observed(&[INFO], vec![]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert!(p.steps.is_empty(), "{p:#?}");
}

#[test]
fn mass_removal_stops_unless_forced() {
    let mut ledger = Vec::new();
    let mut obs = observed(&[], vec![]);
    for i in 0..20 {
        let mut p = ours(i);
        p.name = format!("authentik-sync:u{i}:{INFO}");
        ledger.push(row(
            Resource::AppPassword,
            &keys::app_password(INFO, &p.name),
            LedgerState::Created,
            &i.to_string(),
        ));
        obs.app_passwords.get_mut(INFO).unwrap().push(p);
    }
    let p = plan(
        &DesiredState::default(),
        &obs,
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(p.target_writes(), 0);
    let forced = Guards {
        force: true,
        ..Guards::default()
    };
    let p = plan(
        &DesiredState::default(),
        &obs,
        &ledger,
        &Scope::All,
        &forced,
    );
    assert_eq!(p.target_writes(), 20);
}

#[test]
fn scope_limits_users_but_not_aliases() {
    let scope = Scope::Users(BTreeSet::from(["bob".to_string()]));
    let mut d = desired_alice();
    d.aliases.insert(
        "team@example.com".into(),
        Alias {
            address: "team@example.com".into(),
            goto: BTreeSet::from([ALICE.into()]),
            groups: crate::group_set::GroupSet::new(),
        },
    );
    let p = plan(&d, &observed(&[], vec![]), &[], &scope, &Guards::default());
    assert_eq!(actions(&p), vec![(Resource::Alias, Action::Create)]);
}

#[test]
fn aliases_follow_members_and_only_ours_are_touched() {
    let mut d = DesiredState::default();
    d.aliases.insert(
        "team@example.com".into(),
        Alias {
            address: "team@example.com".into(),
            goto: BTreeSet::from([ALICE.into()]),
            groups: crate::group_set::GroupSet::new(),
        },
    );
    let alias = |address: &str, id, managed| ObservedAlias {
        id,
        address: address.into(),
        goto: BTreeSet::from(["old@example.com".into()]),
        active: true,
        sogo_visible: true,
        sender_allowed: true,
        managed,
    };
    let mut obs = observed(&[], vec![]);
    obs.aliases = Some(BTreeMap::from([
        (
            "team@example.com".into(),
            alias("team@example.com", 1, true),
        ),
        (
            "old-team@example.com".into(),
            alias("old-team@example.com", 2, true),
        ),
        (
            "human@example.com".into(),
            alias("human@example.com", 3, false),
        ),
    ]));
    // A person can copy our marker into a comment: only the ledger proves.
    obs.aliases.as_mut().unwrap().insert(
        "copied@example.com".into(),
        alias("copied@example.com", 4, true),
    );
    let ledger = vec![
        row(
            Resource::Alias,
            &keys::alias("team@example.com"),
            LedgerState::Created,
            "1",
        ),
        row(
            Resource::Alias,
            &keys::alias("old-team@example.com"),
            LedgerState::Created,
            "2",
        ),
    ];
    let p = plan(&d, &obs, &ledger, &Scope::All, &Guards::default());
    let got: Vec<_> = p.steps.iter().map(|s| (s.key.as_str(), s.action)).collect();
    assert_eq!(
        got,
        vec![
            ("old-team@example.com", Action::Delete),
            ("team@example.com", Action::Update)
        ]
    );
}

fn rights(r: &[&str]) -> BTreeSet<String> {
    r.iter().map(|s| s.to_string()).collect()
}

fn desired_acl(r: &[&str]) -> DesiredState {
    let mut d = DesiredState::default();
    d.mailbox_acls.insert(
        keys::mailbox_grant(INFO, ALICE),
        MailboxAcl {
            owner: INFO.into(),
            grantee: ALICE.into(),
            user: "alice".into(),
            rights: rights(r),
            groups: crate::group_set::GroupSet::from(["g1"]),
        },
    );
    d
}

/// info@'s folders with `entries` (folder, id, rights) set.
fn observed_acls(folders: &[&str], entries: &[(&str, &str, &[&str])]) -> Observed {
    let mut owner = ObservedOwnerAcls {
        exists: true,
        folders: folders
            .iter()
            .map(|f| (f.to_string(), BTreeMap::new()))
            .collect(),
    };
    for (folder, id, r) in entries {
        owner
            .folders
            .get_mut(*folder)
            .unwrap()
            .insert(id.to_string(), rights(r));
    }
    Observed {
        mailbox_acls: BTreeMap::from([(INFO.to_string(), owner)]),
        ..Observed::default()
    }
}

fn acl_steps(p: &Plan) -> Vec<(String, Action)> {
    p.steps
        .iter()
        .filter(|s| s.resource == Resource::MailboxAcl)
        .map(|s| {
            (
                s.key.as_str().rsplit('|').next().unwrap().to_owned(),
                s.action,
            )
        })
        .collect()
}

#[test]
fn acl_is_planned_on_every_folder_and_a_persons_entry_stays_theirs() {
    let alice = format!("user={ALICE}");
    let obs = observed_acls(
        &["INBOX", "Sent", "Projects/2026"],
        &[
            // A person already gave alice lookup on Sent; a person gave bob INBOX.
            ("Sent", alice.as_str(), &["lookup"]),
            ("INBOX", "user=bob@example.com", &["lookup", "read"]),
        ],
    );
    let p = plan(
        &desired_acl(&["lookup", "read"]),
        &obs,
        &[],
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        acl_steps(&p),
        vec![
            ("INBOX".into(), Action::Create),
            ("Projects/2026".into(), Action::Create),
            ("Sent".into(), Action::RecordForeign),
        ]
    );
}

#[test]
fn acl_leave_deletes_ours_forgets_foreign_and_vanished_folders() {
    let alice = format!("user={ALICE}");
    let obs = observed_acls(
        &["INBOX", "Sent"],
        &[
            ("INBOX", alice.as_str(), &["lookup", "read"]),
            ("Sent", alice.as_str(), &["lookup"]),
        ],
    );
    let ledger = [
        row(
            Resource::MailboxAcl,
            &keys::mailbox_acl(INFO, ALICE, "INBOX"),
            LedgerState::Created,
            "",
        ),
        row(
            Resource::MailboxAcl,
            &keys::mailbox_acl(INFO, ALICE, "Sent"),
            LedgerState::Foreign,
            "",
        ),
        row(
            Resource::MailboxAcl,
            &keys::mailbox_acl(INFO, ALICE, "Old"),
            LedgerState::Created,
            "",
        ),
    ];
    let p = plan(
        &DesiredState::default(),
        &obs,
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    let mut steps = acl_steps(&p);
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        steps,
        vec![
            ("INBOX".into(), Action::Delete),
            ("Old".into(), Action::Forget),
            ("Sent".into(), Action::Forget),
        ]
    );
}

#[test]
fn acl_in_sync_plans_nothing_and_drift_is_repaired() {
    let alice = format!("user={ALICE}");
    let ledger = [
        row(
            Resource::MailboxAcl,
            &keys::mailbox_acl(INFO, ALICE, "INBOX"),
            LedgerState::Created,
            "",
        ),
        row(
            Resource::MailboxAcl,
            &keys::mailbox_acl(INFO, ALICE, "Sent"),
            LedgerState::Created,
            "",
        ),
    ];
    let in_sync = observed_acls(
        &["INBOX", "Sent"],
        &[
            ("INBOX", alice.as_str(), &["lookup", "read"]),
            ("Sent", alice.as_str(), &["lookup", "read"]),
        ],
    );
    let desired = desired_acl(&["lookup", "read"]);
    let p = plan(&desired, &in_sync, &ledger, &Scope::All, &Guards::default());
    assert!(acl_steps(&p).is_empty(), "{p:?}");

    let drifted = observed_acls(
        &["INBOX", "Sent"],
        &[
            ("INBOX", alice.as_str(), &["lookup"]),
            ("Sent", alice.as_str(), &["lookup", "read"]),
        ],
    );
    let p = plan(&desired, &drifted, &ledger, &Scope::All, &Guards::default());
    assert_eq!(acl_steps(&p), vec![("INBOX".into(), Action::Update)]);
}

fn desired_delegation() -> DesiredState {
    let mut d = DesiredState::default();
    d.sogo_delegations.insert(
        keys::sogo_delegation(INFO, ALICE),
        SogoDelegation {
            owner: INFO.into(),
            delegate: ALICE.into(),
            user: "alice".into(),
            groups: crate::group_set::GroupSet::from(["g1"]),
        },
    );
    d
}

fn observed_sogo(delegates: &[&str], error: Option<&str>) -> Observed {
    Observed {
        sogo: Some(BTreeMap::from([(
            INFO.to_string(),
            ObservedSogoOwner {
                delegate_to: delegates.iter().map(|d| d.to_string()).collect(),
                error: error.map(str::to_owned),
            },
        )])),
        ..Observed::default()
    }
}

fn sogo_actions(p: &Plan) -> Vec<Action> {
    p.steps
        .iter()
        .filter(|s| s.resource == Resource::SogoDelegation)
        .map(|s| s.action)
        .collect()
}

#[test]
fn sogo_delegation_is_created_repaired_and_removed_only_when_ours() {
    let key = keys::sogo_delegation(INFO, ALICE);
    let g = Guards::default();
    let want = desired_delegation();
    assert_eq!(
        sogo_actions(&plan(
            &want,
            &observed_sogo(&[], None),
            &[],
            &Scope::All,
            &g
        )),
        vec![Action::Create]
    );
    // A person's delegation already there: recorded foreign, never removed.
    assert_eq!(
        sogo_actions(&plan(
            &want,
            &observed_sogo(&[ALICE], None),
            &[],
            &Scope::All,
            &g
        )),
        vec![Action::RecordForeign]
    );
    let ours = [row(
        Resource::SogoDelegation,
        &key,
        LedgerState::Created,
        "",
    )];
    // SOGo overwrote our entry: repaired.
    assert_eq!(
        sogo_actions(&plan(
            &want,
            &observed_sogo(&[], None),
            &ours,
            &Scope::All,
            &g
        )),
        vec![Action::Create]
    );
    let none = DesiredState::default();
    assert_eq!(
        sogo_actions(&plan(
            &none,
            &observed_sogo(&[ALICE], None),
            &ours,
            &Scope::All,
            &g
        )),
        vec![Action::Delete]
    );
    let foreign = [row(
        Resource::SogoDelegation,
        &key,
        LedgerState::Foreign,
        "",
    )];
    assert_eq!(
        sogo_actions(&plan(
            &none,
            &observed_sogo(&[ALICE], None),
            &foreign,
            &Scope::All,
            &g
        )),
        vec![Action::Forget]
    );
}

#[test]
fn unreadable_sogo_settings_plan_nothing_and_warn() {
    let ours = [row(
        Resource::SogoDelegation,
        &keys::sogo_delegation(INFO, ALICE),
        LedgerState::Created,
        "",
    )];
    let p = plan(
        &DesiredState::default(),
        &observed_sogo(&[ALICE], Some("not valid JSON")),
        &ours,
        &Scope::All,
        &Guards::default(),
    );
    assert!(sogo_actions(&p).is_empty());
    assert!(
        p.warnings.iter().any(|w| w.contains("unreadable")),
        "{:?}",
        p.warnings
    );
}

fn nc_key() -> LedgerKey {
    keys::nextcloud_account("alice", INFO)
}

fn desired_nextcloud() -> DesiredState {
    let mut d = desired_alice();
    d.nextcloud_accounts.insert(
        nc_key(),
        NextcloudAccount {
            user: "alice".into(),
            email: INFO.into(),
            login: INFO.into(),
            app_password_key: keys::app_password(INFO, NAME),
            groups: crate::group_set::GroupSet::from(["g1"]),
        },
    );
    d
}

fn observed_nextcloud(
    app_passwords: Vec<ObservedAppPassword>,
    accounts: &[(i64, bool)],
) -> Observed {
    let mut o = observed(&[INFO], app_passwords);
    o.nextcloud = Some(BTreeMap::from([(
        "alice".to_string(),
        accounts
            .iter()
            .map(|(id, configured_server)| ObservedNextcloudAccount {
                id: *id,
                email: INFO.into(),
                imap_user: INFO.into(),
                configured_server: *configured_server,
                provisioned: false,
            })
            .collect(),
    )]));
    o
}

fn nc_and_app_password_steps(p: &Plan) -> Vec<(Resource, Action)> {
    p.steps
        .iter()
        .filter(|s| {
            matches!(
                s.resource,
                Resource::NextcloudAccount | Resource::AppPassword
            )
        })
        .map(|s| (s.resource, s.action))
        .collect()
}

#[test]
fn nextcloud_account_is_created_with_a_fresh_app_password() {
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![], &[]),
        &[row(
            Resource::SenderAcl,
            &keys::sender_acl(ALICE, INFO),
            LedgerState::Foreign,
            "",
        )],
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        nc_and_app_password_steps(&p),
        vec![
            (Resource::AppPassword, Action::Create),
            (Resource::NextcloudAccount, Action::Create)
        ]
    );
}

#[test]
fn after_a_crash_between_the_two_the_app_password_is_rotated_not_leaked() {
    let ledger = [
        row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        ),
        row(
            Resource::NextcloudAccount,
            &nc_key(),
            LedgerState::Intent,
            "",
        ),
    ];
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![ours(7)], &[]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        nc_and_app_password_steps(&p),
        vec![
            (Resource::AppPassword, Action::Rotate),
            (Resource::NextcloudAccount, Action::Create)
        ]
    );
    // occ created the account but the id was never recorded: adopt and re-key.
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![ours(7)], &[(41, true)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        nc_and_app_password_steps(&p),
        vec![
            (Resource::AppPassword, Action::Rotate),
            (Resource::NextcloudAccount, Action::Rekey)
        ]
    );
    // A re-key that failed last time (intent with the account id) is redone.
    let ledger = [
        row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        ),
        row(
            Resource::NextcloudAccount,
            &nc_key(),
            LedgerState::Intent,
            "41",
        ),
    ];
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![ours(7)], &[(41, true)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        nc_and_app_password_steps(&p),
        vec![
            (Resource::AppPassword, Action::Rotate),
            (Resource::NextcloudAccount, Action::Rekey)
        ]
    );
}

#[test]
fn a_lost_app_password_is_recreated_and_handed_to_the_account() {
    let ledger = [
        row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        ),
        row(
            Resource::NextcloudAccount,
            &nc_key(),
            LedgerState::Created,
            "41",
        ),
    ];
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![], &[(41, true)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        nc_and_app_password_steps(&p),
        vec![
            (Resource::AppPassword, Action::Create),
            (Resource::NextcloudAccount, Action::Rekey)
        ]
    );
    // In sync: nothing at all.
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![ours(7)], &[(41, true)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert!(nc_and_app_password_steps(&p).is_empty(), "{p:?}");
}

#[test]
fn a_users_own_account_is_foreign_and_leaving_deletes_only_ours() {
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![ours(7)], &[(5, true)]),
        &[row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        )],
        &Scope::All,
        &Guards::default(),
    );
    // Their own account needs no app password: ours (ledger-proven) goes,
    // and none is created.
    assert_eq!(
        nc_and_app_password_steps(&p),
        vec![
            (Resource::AppPassword, Action::Delete),
            (Resource::NextcloudAccount, Action::RecordForeign)
        ]
    );
    let ledger = [
        row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        ),
        row(
            Resource::NextcloudAccount,
            &nc_key(),
            LedgerState::Created,
            "41",
        ),
    ];
    let p = plan(
        &DesiredState::default(),
        &observed_nextcloud(vec![ours(7)], &[(5, true), (41, true)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    let deletes: Vec<&Step> = p
        .steps
        .iter()
        .filter(|s| s.action == Action::Delete)
        .collect();
    assert_eq!(deletes.len(), 2, "{p:?}");
    assert!(
        deletes
            .iter()
            .any(|s| matches!(s.target, Target::NextcloudAccount { id: 41, .. }))
    );
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.target, Target::NextcloudAccount { id: 5, .. }))
    );
}

#[test]
fn no_account_is_planned_for_a_user_nextcloud_does_not_know() {
    let mut observed = observed_nextcloud(vec![ours(7)], &[]);
    observed.nextcloud_unknown_users.insert("alice".into());
    let p = plan(
        &desired_nextcloud(),
        &observed,
        &[row(
            Resource::AppPassword,
            &keys::app_password(INFO, NAME),
            LedgerState::Created,
            "7",
        )],
        &Scope::All,
        &Guards::default(),
    );
    assert!(nc_and_app_password_steps(&p).is_empty(), "{p:?}");
    assert!(
        p.warnings.iter().any(|w| w.contains("no user alice")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_persons_app_password_with_our_name_is_never_taken_over() {
    // Entitled: a same-named app password without a ledger record is a
    // person's. Recorded foreign; nothing created, updated or deleted.
    let mut theirs = ours(9);
    theirs.protocols = BTreeSet::from(["dav_access".into()]);
    let p = plan(
        &desired_nextcloud(),
        &observed_nextcloud(vec![theirs.clone()], &[]),
        &[],
        &Scope::All,
        &Guards::default(),
    );
    let app: Vec<_> = actions(&p)
        .into_iter()
        .filter(|(r, _)| *r == Resource::AppPassword)
        .collect();
    assert_eq!(app, vec![(Resource::AppPassword, Action::RecordForeign)]);
    assert!(p.warnings.iter().any(|w| w.contains("not made by us")));
    // Leaves: the foreign row is forgotten, the object stays.
    let foreign = row(
        Resource::AppPassword,
        &keys::app_password(INFO, NAME),
        LedgerState::Foreign,
        "9",
    );
    let p = plan(
        &DesiredState::default(),
        &observed_nextcloud(vec![theirs.clone()], &[]),
        &[foreign],
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(
        actions(&p),
        vec![(Resource::AppPassword, Action::Forget)],
        "{p:?}"
    );
    // And with no record at all, a later sweep leaves it alone too.
    let p = plan(
        &DesiredState::default(),
        &observed_nextcloud(vec![theirs], &[]),
        &[],
        &Scope::All,
        &Guards::default(),
    );
    assert!(actions(&p).is_empty(), "{p:?}");
}

#[test]
fn an_intent_is_settled_by_the_next_observation() {
    let key = keys::sender_acl(ALICE, INFO);
    let intent = row(Resource::SenderAcl, &key, LedgerState::Intent, "");
    // The write was reported failed but happened: present → ours, and
    // revoked when access ends.
    let p = plan(
        &desired_alice(),
        &observed(&[INFO], vec![ours(7)]),
        std::slice::from_ref(&intent),
        &Scope::All,
        &Guards::default(),
    );
    assert!(actions(&p).contains(&(Resource::SenderAcl, Action::Adopt)));
    let p = plan(
        &DesiredState::default(),
        &observed(&[INFO], vec![]),
        std::slice::from_ref(&intent),
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(actions(&p), vec![(Resource::SenderAcl, Action::Delete)]);
    // It did not happen: absent → forgotten.
    let p = plan(
        &DesiredState::default(),
        &observed(&[], vec![]),
        &[intent],
        &Scope::All,
        &Guards::default(),
    );
    assert_eq!(actions(&p), vec![(Resource::SenderAcl, Action::Forget)]);
}

#[test]
fn an_unobservable_target_holds_only_its_own_resources() {
    let mut d = desired_alice();
    d.sogo_delegations = desired_delegation().sogo_delegations;
    let mut obs = Observed::default();
    for resource in [
        Resource::SenderAcl,
        Resource::AppPassword,
        Resource::Alias,
        Resource::MailboxAcl,
    ] {
        obs.set_unavailable(resource, Unavailable::transient("agent down"));
    }
    obs.sogo = observed_sogo(&[], None).sogo;
    let ledger = [row(
        Resource::SenderAcl,
        &keys::sender_acl(ALICE, "old@example.com"),
        LedgerState::Created,
        "",
    )];
    let p = plan(&d, &obs, &ledger, &Scope::All, &Guards::default());
    assert_eq!(
        actions(&p),
        vec![(Resource::SogoDelegation, Action::Create)],
        "{p:?}"
    );
    let held: BTreeSet<Resource> = p.held.iter().map(|h| h.resource).collect();
    assert_eq!(
        held,
        BTreeSet::from([Resource::SenderAcl, Resource::AppPassword])
    );
    assert!(p.held.iter().all(|h| h.transient));
}

#[test]
fn one_unreadable_mailbox_holds_only_that_mailbox() {
    let mut d = desired_alice();
    let other = "sales@example.com";
    let other_name = markers::app_password_name("alice", other);
    d.app_passwords.insert(
        keys::app_password(other, &other_name),
        AppPassword {
            mailbox: other.into(),
            name: other_name,
            user: "alice".into(),
            protocols: vec!["imap_access".into()],
            groups: crate::group_set::GroupSet::from(["g2"]),
        },
    );
    let mut obs = observed(&[INFO], vec![]);
    obs.subject_errors.insert(
        ("app_password".into(), other.into()),
        Unavailable::transient("Mailcow answered HTTP 404"),
    );
    let p = plan(&d, &obs, &[], &Scope::All, &Guards::default());
    let created: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.resource == Resource::AppPassword && s.action == Action::Create)
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(created, vec![keys::app_password(INFO, NAME).as_str()]);
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.held[0].subject, other);
}

#[test]
fn without_a_nextcloud_agent_no_app_password_is_made() {
    let mut obs = observed_nextcloud(vec![], &[]);
    obs.nextcloud = None;
    obs.set_unavailable(
        Resource::NextcloudAccount,
        Unavailable::not_configured("no agent is configured for nextcloud_account"),
    );
    let p = plan(
        &desired_nextcloud(),
        &obs,
        &[],
        &Scope::All,
        &Guards::default(),
    );
    assert!(nc_and_app_password_steps(&p).is_empty(), "{p:?}");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("1 app password(s) for Nextcloud Mail not created")),
        "{:?}",
        p.warnings
    );
    assert!(p.held.iter().all(|h| !h.transient));
}

#[test]
fn an_empty_ledger_over_existing_objects_warns_loudly() {
    let p = plan(
        &desired_alice(),
        &observed(&[INFO], vec![]),
        &[],
        &Scope::All,
        &Guards::default(),
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("LEDGER EMPTY") && w.contains(" 1 object(s)")),
        "{:?}",
        p.warnings
    );
    // Not when the ledger already knows what we made.
    let ledger = [row(
        Resource::AppPassword,
        &keys::app_password(INFO, NAME),
        LedgerState::Created,
        "7",
    )];
    let p = plan(
        &desired_alice(),
        &observed(&[INFO], vec![ours(7)]),
        &ledger,
        &Scope::All,
        &Guards::default(),
    );
    assert!(!p.warnings.iter().any(|w| w.starts_with("LEDGER EMPTY")));
}
