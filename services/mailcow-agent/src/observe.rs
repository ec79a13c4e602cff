//! Observe: read what exists. Never writes.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use reconciler_proto::agent::{
    AclEntry, AliasState, AppPasswordProtocol, AppPasswordState, FolderAcl, MailboxAclState,
    MailboxRight, MailcowObserveRequest, MailcowObserveResponse, ObserveError, SenderAclState,
    Unavailable,
};
use reconciler_proto::mailcow::markers::{is_managed_alias_comment, parse_app_password_name};

use crate::batch::ListingSizes;
use crate::dovecot::Dovecot;
use crate::error::{Error, Result};
use crate::mailcow::{Alias, MailcowApi};

/// Reads in flight at once, as many as `MAILCOW_CONCURRENCY`'s default:
/// each takes one of the php-fpm workers Mailcow's API shares with its UI.
pub const READ_CONCURRENCY: usize = 8;

/// Owners whose folders are read at once (each is one doveadm exec).
pub const ACL_CONCURRENCY: usize = 2;

/// `sizes` learns how many aliases and mailboxes the listings read here
/// showed, for [`crate::batch`] to judge whether a listing is worth it.
pub async fn observe(
    api: Arc<dyn MailcowApi>,
    dovecot: Option<&Dovecot>,
    sizes: &ListingSizes,
    request: MailcowObserveRequest,
) -> Result<MailcowObserveResponse> {
    // One alias listing serves both the alias report and the implicit
    // send-as rights of every login.
    let aliases = if request.aliases || !request.sender_acl_logins.is_empty() {
        let aliases = api.aliases().await?;
        sizes.saw_aliases(aliases.len());
        aliases
    } else {
        Vec::new()
    };

    // One subject that cannot be read (an invalid value, a Mailcow error
    // for that mailbox) is reported in `errors` and left out; it never
    // fails the whole observation, nor hides the other subjects.
    let mut errors = Vec::new();
    let logins = unique(&request.sender_acl_logins);
    let listed = listed_mailboxes(api.as_ref(), sizes, logins.len()).await?;
    let sender_acls = stream::iter(logins)
        .map(|login| {
            let api = api.clone();
            let aliases = &aliases;
            let listed = &listed;
            async move {
                let state = match listed {
                    Some(listed) => crate::address::plain("login", &login)
                        .map(|_| listed_state(listed, aliases, login.clone())),
                    None => sender_acl_state(api.as_ref(), aliases, login.clone()).await,
                };
                (login, state)
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(login, state)| keep(state, "sender_acl", login, &mut errors))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();

    let app_passwords = stream::iter(unique(&request.app_password_mailboxes))
        .map(|mailbox| {
            let api = api.clone();
            async move {
                let listed = api.app_passwords(&mailbox).await;
                (mailbox, listed)
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|(mailbox, listed)| keep(listed, "app_password", mailbox, &mut errors))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .flatten()
        // Only our own app passwords are reported; the rest are none of our business.
        .filter(|p| parse_app_password_name(&p.name).is_some())
        .map(|p| AppPasswordState {
            id: p.id,
            mailbox: p.mailbox,
            name: p.name,
            active: p.active,
            // A flag this contract does not know reads as UNSPECIFIED: the
            // coordinator then sees a difference, never a false match.
            protocols: p
                .protocols
                .iter()
                .map(|f| AppPasswordProtocol::from_mailcow_flag(f).unwrap_or_default() as i32)
                .collect(),
        })
        .collect();

    let aliases = if request.aliases {
        aliases
            .into_iter()
            .map(|a| AliasState {
                managed: is_managed_alias_comment(&a.private_comment),
                id: a.id,
                address: a.address,
                goto: a.goto,
                active: a.active,
                sogo_visible: a.sogo_visible,
                sender_allowed: a.sender_allowed,
            })
            .collect()
    } else {
        Vec::new()
    };

    // An owner doveadm would read as a mask of users (`*`) is reported,
    // never asked about.
    let owners: Vec<String> = unique(&request.mailbox_acl_owners)
        .into_iter()
        .filter_map(|owner| {
            keep(
                crate::acl::one_user("owner", &owner).map(|_| ()),
                "mailbox_acl",
                owner.clone(),
                &mut errors,
            )
            .ok()
            .flatten()
            .map(|()| owner)
        })
        .collect();
    // Without Dovecot access the rest is still worth reporting; the
    // coordinator then plans no ACL changes and says why.
    let unavailable = |e: Error| Unavailable {
        reason: e.to_string(),
        outcome: e.outcome() as i32,
    };
    let mut mailbox_acls_unavailable = None;
    let mailbox_acls = match (owners.is_empty(), dovecot) {
        (true, _) => Vec::new(),
        (false, None) => {
            mailbox_acls_unavailable = Some(unavailable(not_configured()));
            Vec::new()
        }
        (false, Some(dovecot)) => match observe_acls(dovecot, &owners).await {
            Ok(acls) => acls,
            Err(e) => {
                mailbox_acls_unavailable = Some(unavailable(e));
                Vec::new()
            }
        },
    };

    Ok(MailcowObserveResponse {
        doveadm_execs: if dovecot.is_some() {
            owners.len() as u64
        } else {
            0
        },
        mailbox_acls_unavailable,
        sender_acls,
        app_passwords,
        aliases,
        mailbox_acls,
        errors,
    })
}

/// The value of a subject's read, or `None` with the failure recorded.
/// A rejected API key or a configuration error is not about the subject:
/// nothing else could be read either, so the whole observation fails.
fn keep<T>(
    read: Result<T>,
    resource: &str,
    subject: String,
    errors: &mut Vec<ObserveError>,
) -> Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e @ (Error::Unauthorized { .. } | Error::Config(_))) => Err(e),
        Err(e) => {
            tracing::warn!(resource, subject = %subject.escape_debug(), error = %e, "observe: subject skipped");
            errors.push(ObserveError {
                resource: resource.to_owned(),
                subject,
                message: e.to_string(),
                outcome: e.outcome() as i32,
            });
            Ok(None)
        }
    }
}

async fn observe_acls(dovecot: &Dovecot, owners: &[String]) -> Result<Vec<MailboxAclState>> {
    stream::iter(owners.iter().cloned())
        .map(|owner| async move {
            let acls = dovecot.observe(&owner).await?;
            Ok::<_, Error>(MailboxAclState {
                owner,
                owner_exists: acls.exists,
                folders: acls
                    .folders
                    .into_iter()
                    .map(|(folder, entries)| FolderAcl {
                        folder,
                        entries: entries
                            .into_iter()
                            .map(|(id, rights)| AclEntry {
                                id,
                                rights: wire_rights(&rights),
                            })
                            .collect(),
                    })
                    .collect(),
            })
        })
        .buffered(ACL_CONCURRENCY)
        .try_collect()
        .await
}

/// Mailbox ACLs were asked for, but this agent has no way to reach doveadm.
pub fn not_configured() -> Error {
    Error::Config(
        "mailbox ACLs need DOVECOT_CONTAINER (docker exec) or DOVEADM_MODE=local on the mailcow-agent"
            .into(),
    )
}

/// Above this many logins, one `get/mailbox/all` is cheaper than a
/// `get/mailbox/{login}` each: a sweep reads at the floor (one listing),
/// a webhook about one user still reads only their mailbox.
pub const PER_MAILBOX_READS_MAX: usize = 8;

/// Every mailbox by lower-cased login, when `logins` is many and this
/// Mailcow lists `sender_acl` (2026-07a and later); `None`: read per
/// mailbox instead (few logins, or an older server, which then says it
/// needs 2026-07a on the first read).
async fn listed_mailboxes(
    api: &dyn MailcowApi,
    sizes: &ListingSizes,
    logins: usize,
) -> Result<Option<std::collections::BTreeMap<String, crate::mailcow::Mailbox>>> {
    if logins <= PER_MAILBOX_READS_MAX {
        return Ok(None);
    }
    let mailboxes = api.mailboxes().await?;
    sizes.saw_mailboxes(mailboxes.len());
    if mailboxes.iter().any(|m| m.sender_acl.is_none()) {
        return Ok(None);
    }
    Ok(Some(
        mailboxes
            .into_iter()
            .map(|m| (m.username.to_ascii_lowercase(), m))
            .collect(),
    ))
}

/// A login's state from the mailbox listing.
fn listed_state(
    listed: &std::collections::BTreeMap<String, crate::mailcow::Mailbox>,
    aliases: &[Alias],
    login: String,
) -> SenderAclState {
    match listed.get(&login.to_ascii_lowercase()) {
        None => SenderAclState {
            login,
            mailbox_exists: false,
            ..Default::default()
        },
        Some(mailbox) => SenderAclState {
            implicitly_allowed: implicitly_allowed(&login, aliases),
            send_as: mailbox.sender_acl.clone().unwrap_or_default(),
            login,
            mailbox_exists: true,
        },
    }
}

async fn sender_acl_state(
    api: &dyn MailcowApi,
    aliases: &[Alias],
    login: String,
) -> Result<SenderAclState> {
    let Some(mailbox) = api.mailbox(&login).await? else {
        return Ok(SenderAclState {
            login,
            mailbox_exists: false,
            ..Default::default()
        });
    };
    let send_as = mailbox.sender_acl.ok_or_else(|| {
        Error::Config(
            "Mailcow does not report sender_acl on get/mailbox; it needs release 2026-07a or newer"
                .into(),
        )
    })?;
    Ok(SenderAclState {
        implicitly_allowed: implicitly_allowed(&login, aliases),
        login,
        mailbox_exists: true,
        send_as,
    })
}

/// Addresses `login` may already send as without a sender_acl row: its own,
/// and every active alias with `sender_allowed` whose goto includes it.
/// Mailcow silently drops these from sender_acl writes (reference §2.3).
pub fn implicitly_allowed(login: &str, aliases: &[Alias]) -> Vec<String> {
    let mut out = vec![login.to_ascii_lowercase()];
    out.extend(
        aliases
            .iter()
            .filter(|a| a.active && a.sender_allowed)
            .filter(|a| a.goto.iter().any(|g| g.eq_ignore_ascii_case(login)))
            .map(|a| a.address.to_ascii_lowercase()),
    );
    out.sort();
    out.dedup();
    out
}

/// Each subject once, exactly as asked: a value with stray whitespace is
/// not quietly turned into another (valid) one, it is refused as it is.
fn unique(items: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = items.iter().filter(|s| !s.is_empty()).collect();
    set.into_iter().cloned().collect()
}

/// An entry's rights on the wire, in enum order. A right this contract
/// does not know reads as UNSPECIFIED, so the entry never matches a wanted
/// set and the coordinator rewrites it.
fn wire_rights(rights: &BTreeSet<String>) -> Vec<i32> {
    let mut wire: Vec<i32> = rights
        .iter()
        .map(|r| MailboxRight::from_doveadm_name(r).unwrap_or_default() as i32)
        .collect();
    wire.sort_unstable();
    wire.dedup();
    wire
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use reconciler_proto::agent::Outcome;
    use reconciler_runtime::exec::{CommandRunner, ExecError, ExecOutput};

    use super::*;

    /// Counts execs; answers every one as if the owner were unknown (67).
    #[derive(Default)]
    struct Counting(Mutex<u32>);

    #[async_trait]
    impl CommandRunner for Counting {
        async fn run(&self, _argv: &[String]) -> Result<ExecOutput, ExecError> {
            *self.0.lock().unwrap() += 1;
            Ok(ExecOutput {
                stdout: "\u{1e}LIST 67\n".into(),
                stderr: String::new(),
                exit_code: 0,
            })
        }
    }

    #[tokio::test]
    async fn an_owner_doveadm_would_read_as_a_mask_is_reported_and_never_asked_about() {
        let runner = Arc::new(Counting::default());
        let dovecot = Dovecot::new(runner.clone(), "doveadm");
        let api: Arc<dyn MailcowApi> = Arc::new(crate::fake::FakeMailcow::default());
        let answer = observe(
            api,
            Some(&dovecot),
            &ListingSizes::default(),
            MailcowObserveRequest {
                mailbox_acl_owners: vec!["*@example.com".into(), "info@example.com".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(*runner.0.lock().unwrap(), 1, "only info@ went to doveadm");
        let owners: Vec<&str> = answer
            .mailbox_acls
            .iter()
            .map(|a| a.owner.as_str())
            .collect();
        assert_eq!(owners, ["info@example.com"]);
        assert_eq!(answer.errors.len(), 1, "{:?}", answer.errors);
        assert_eq!(answer.errors[0].subject, "*@example.com");
        assert_eq!(answer.errors[0].outcome, Outcome::Permanent as i32);
    }
}
