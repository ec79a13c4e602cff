//! The reads one Apply call shares. Every write is preceded by a re-check
//! of its object (is it still ours, still as planned?); with many objects
//! in a batch, one listing taken at the start answers every re-check
//! instead of one read per object.
//!
//! A listing is only as fresh as the moment it was read. This agent's own
//! writes after that moment are known ([`WriteLog`]): an object written
//! since (by another change of this batch or a concurrent Apply call) is
//! re-read on its own, as is an object the listing does not show. What a
//! person changes in the Mailcow UI during the batch is seen as with a
//! per-object read a moment earlier: the window is the batch, not the
//! request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reconciler_proto::agent::{MailcowChange, mailcow_change::Kind};

use crate::address;
use crate::mailcow::{Alias, MailcowApi};

/// From this many objects of a kind in one batch on, their re-checks read
/// one listing instead of each its own object...
pub const LISTING_FROM: usize = 2;

/// ...as long as they are at least one in this many of the objects the
/// last listing of that kind showed. Mailcow builds every listed object's
/// details on the server, one to a few queries per alias and many per
/// mailbox (quota, attributes, ACLs), so a listing of 10,000 mailboxes for
/// a batch of 200 logins would cost far more than their 200 reads, while
/// 1,000 aliases list for about the price of a few dozen single reads.
pub const ALIAS_LISTING_SHARE: usize = 16;
pub const MAILBOX_LISTING_SHARE: usize = 8;

/// How many objects the last listing of each kind showed, by a batch or by
/// Observe (which the coordinator calls before every Apply of a run); 0:
/// none read yet, so the first batch with enough objects lists and learns.
#[derive(Debug, Default)]
pub struct ListingSizes {
    aliases: AtomicUsize,
    mailboxes: AtomicUsize,
}

impl ListingSizes {
    pub fn saw_aliases(&self, n: usize) {
        self.aliases.store(n, Ordering::Relaxed);
    }

    pub fn saw_mailboxes(&self, n: usize) {
        self.mailboxes.store(n, Ordering::Relaxed);
    }

    /// Whether `objects` re-checks are worth a listing whose last size was
    /// `last`, for objects of which one in `share` is enough.
    fn worth_listing(objects: usize, last: &AtomicUsize, share: usize) -> bool {
        objects >= LISTING_FROM && objects.saturating_mul(share) >= last.load(Ordering::Relaxed)
    }
}

/// When this agent last wrote each object (a lowercased login, mailbox or
/// alias address), on one counter that only goes up.
#[derive(Debug, Default)]
pub struct WriteLog {
    clock: AtomicU64,
    last: Mutex<HashMap<String, u64>>,
}

impl WriteLog {
    /// The counter now: a listing read after this call shows every write
    /// that finished before it.
    pub fn mark(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Records a write to `object` now and again when the guard drops, so
    /// a write still under way when a listing was read counts as after it.
    pub fn writing(&self, object: &str) -> Writing<'_> {
        let key = object.to_ascii_lowercase();
        self.touch(&key);
        Writing { log: self, key }
    }

    /// Whether `object` was written after `mark` (or still is).
    pub fn written_since(&self, object: &str, mark: u64) -> bool {
        self.entries()
            .get(&object.to_ascii_lowercase())
            .is_some_and(|&at| at > mark)
    }

    fn touch(&self, key: &str) {
        let at = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        self.entries().insert(key.to_owned(), at);
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A write to one object under way; see [`WriteLog::writing`].
#[must_use = "the write is recorded as finished when the guard drops"]
pub struct Writing<'a> {
    log: &'a WriteLog,
    key: String,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.log.touch(&self.key);
    }
}

/// Listings read once for a batch's re-checks. A kind with too few
/// objects in the batch, or whose listing failed or lacks what the
/// re-check needs, is `None`: its objects are read one by one.
#[derive(Debug, Default)]
pub struct Listings {
    /// [`WriteLog::mark`] before the first listing was read.
    mark: u64,
    /// `get/alias/all`, by id.
    aliases: Option<HashMap<i64, Alias>>,
    /// `get/mailbox/all`'s `sender_acl`, by lowercased login.
    sender_acl: Option<HashMap<String, Vec<String>>>,
}

impl Listings {
    /// Nothing listed: every re-check reads its own object.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the listings `changes` has enough objects for.
    pub async fn read<'c>(
        api: &dyn MailcowApi,
        writes: &WriteLog,
        sizes: &ListingSizes,
        changes: impl IntoIterator<Item = &'c MailcowChange>,
    ) -> Self {
        // Only changes that will get as far as their re-check: one
        // refused for its input sends nothing at all.
        let plain = |what, a: &str| address::plain(what, a).is_ok();
        let (mut aliases, mut logins) = (0, 0);
        for change in changes {
            match &change.kind {
                Some(Kind::AliasUpdate(c))
                    if plain("alias", &c.address)
                        && !c.goto.is_empty()
                        && c.goto.iter().all(|g| plain("goto", g)) =>
                {
                    aliases += 1
                }
                Some(Kind::AliasDelete(c)) if plain("alias", &c.address) => aliases += 1,
                Some(Kind::SenderAcl(c))
                    if plain("login", &c.login) && c.add.iter().all(|a| plain("send-as", a)) =>
                {
                    logins += 1
                }
                _ => {}
            }
        }
        let mark = writes.mark();
        let aliases = if ListingSizes::worth_listing(aliases, &sizes.aliases, ALIAS_LISTING_SHARE) {
            match api.aliases().await {
                Ok(all) => {
                    sizes.aliases.store(all.len(), Ordering::Relaxed);
                    Some(all.into_iter().map(|a| (a.id, a)).collect())
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alias listing for the batch failed; re-checking each alias on its own");
                    None
                }
            }
        } else {
            None
        };
        let sender_acl = if ListingSizes::worth_listing(
            logins,
            &sizes.mailboxes,
            MAILBOX_LISTING_SHARE,
        ) {
            match api.mailboxes().await {
                Ok(all) => {
                    sizes.mailboxes.store(all.len(), Ordering::Relaxed);
                    // Servers before 2026-07a list mailboxes without sender_acl.
                    all.into_iter()
                        .map(|m| Some((m.username.to_ascii_lowercase(), m.sender_acl?)))
                        .collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mailbox listing for the batch failed; re-checking each login on its own");
                    None
                }
            }
        } else {
            None
        };
        Self {
            mark,
            aliases,
            sender_acl,
        }
    }

    /// Alias `id` as listed, unless the listing is missing, does not show
    /// it, or this agent wrote `address` since.
    pub fn alias(&self, writes: &WriteLog, id: i64, address: &str) -> Option<Alias> {
        if writes.written_since(address, self.mark) {
            return None;
        }
        self.aliases.as_ref()?.get(&id).cloned()
    }

    /// `login`'s sender_acl as listed, on the same terms as [`Self::alias`].
    pub fn sender_acl(&self, writes: &WriteLog, login: &str) -> Option<Vec<String>> {
        if writes.written_since(login, self.mark) {
            return None;
        }
        self.sender_acl
            .as_ref()?
            .get(&login.to_ascii_lowercase())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_during_or_after_the_mark_makes_the_listing_stale_for_that_object() {
        let log = WriteLog::default();
        {
            let _w = log.writing("Alice@x.org");
        }
        let mark = log.mark();
        assert!(!log.written_since("alice@x.org", mark), "written before");
        let under_way = log.writing("bob@x.org");
        let mark_during = log.mark();
        drop(under_way);
        assert!(
            log.written_since("BOB@x.org", mark_during),
            "finished after the mark"
        );
        assert!(!log.written_since("carol@x.org", 0), "never written");
    }

    #[test]
    fn a_listing_is_read_for_a_sizeable_share_of_the_objects_only() {
        let last = AtomicUsize::new(0);
        let worth = |n, share| ListingSizes::worth_listing(n, &last, share);
        assert!(!worth(1, MAILBOX_LISTING_SHARE), "one object reads itself");
        assert!(worth(2, MAILBOX_LISTING_SHARE), "size unknown yet");
        last.store(10_300, Ordering::Relaxed);
        assert!(!worth(200, MAILBOX_LISTING_SHARE));
        last.store(1_000, Ordering::Relaxed);
        assert!(worth(200, MAILBOX_LISTING_SHARE));
        assert!(worth(121, ALIAS_LISTING_SHARE));
        assert!(!worth(121, MAILBOX_LISTING_SHARE));
    }
}
