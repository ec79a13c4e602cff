//! Observe: read what exists. Never writes.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use reconciler_proto::agent::{
    AliasState, AppPasswordState, ObserveRequest, ObserveResponse, SenderAclState,
};
use reconciler_proto::markers::{APP_PASSWORD_PREFIX, is_managed_alias_comment};

use crate::error::{Error, Result};
use crate::mailcow::{Alias, MailcowApi};

/// Reads in flight at once. Mailcow is PHP-FPM with a handful of workers;
/// more would only queue there.
pub const READ_CONCURRENCY: usize = 8;

pub async fn observe(api: Arc<dyn MailcowApi>, request: ObserveRequest) -> Result<ObserveResponse> {
    // One alias listing serves both the alias report and the implicit
    // send-as rights of every login.
    let aliases = if request.aliases || !request.sender_acl_logins.is_empty() {
        api.aliases().await?
    } else {
        Vec::new()
    };

    let sender_acls = stream::iter(unique(&request.sender_acl_logins))
        .map(|login| {
            let api = api.clone();
            let aliases = &aliases;
            async move { sender_acl_state(api.as_ref(), aliases, login).await }
        })
        .buffered(READ_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;

    let app_passwords = stream::iter(unique(&request.app_password_mailboxes))
        .map(|mailbox| {
            let api = api.clone();
            async move { api.app_passwords(&mailbox).await }
        })
        .buffered(READ_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        // Only our own app passwords are reported; the rest are none of our business.
        .filter(|p| p.name.starts_with(APP_PASSWORD_PREFIX))
        .map(|p| AppPasswordState {
            id: p.id,
            mailbox: p.mailbox,
            name: p.name,
            active: p.active,
            protocols: p.protocols,
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

    Ok(ObserveResponse {
        sender_acls,
        app_passwords,
        aliases,
    })
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

fn unique(items: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = items.iter().map(|s| s.trim().to_owned()).collect();
    set.into_iter().filter(|s| !s.is_empty()).collect()
}
