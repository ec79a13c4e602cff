//! Mutual exclusion per key (a user, a mailbox, an address) inside one
//! process: two changes to the same object never interleave their
//! read-modify-write cycles, while changes to different objects run at once.
//!
//! A key's entry lives exactly as long as someone holds or waits for it, so
//! the map never outgrows the work in flight, however many keys a process
//! sees over its life.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Locks by string key. Cloning shares the locks.
#[derive(Clone, Debug, Default)]
pub struct KeyedLocks {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    lock: Arc<AsyncMutex<()>>,
    /// Holders and waiters. Counted rather than read off the `Arc`, so the
    /// entry's removal does not depend on the order in which a cancelled
    /// waiter's parts are dropped.
    claims: usize,
}

/// Holds one key until dropped.
#[must_use = "the key is released as soon as the guard is dropped"]
pub struct KeyGuard {
    // Field order is drop order: the lock is released before the claim is
    // withdrawn, so the entry is never removed (and a fresh one made for
    // the next caller) while this guard still holds it.
    _held: OwnedMutexGuard<()>,
    _claim: Claim,
}

/// One holder's or waiter's stake in a key's entry.
struct Claim {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut entries = lock_map(&self.entries);
        if let Some(entry) = entries.get_mut(&self.key) {
            entry.claims -= 1;
            if entry.claims == 0 {
                entries.remove(&self.key);
            }
        }
    }
}

impl KeyedLocks {
    /// Waits for and holds `key` until the guard drops. Waiters are served
    /// in arrival order (tokio's mutex is fair). Keys are compared exactly;
    /// callers normalise them (e.g. lower-case addresses) first.
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let (claim, lock) = self.claim(key);
        // Cancelled while waiting: `claim` drops and withdraws itself.
        let held = lock.lock_owned().await;
        KeyGuard {
            _held: held,
            _claim: claim,
        }
    }

    /// Holds every key in `keys`, taken one by one in sorted order: two
    /// callers asking for overlapping sets can never each hold a key the
    /// other waits for. A set also rules out asking for one key twice,
    /// which would wait on itself forever.
    pub async fn lock_all(&self, keys: &BTreeSet<String>) -> Vec<KeyGuard> {
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.lock(key).await);
        }
        guards
    }

    fn claim(&self, key: &str) -> (Claim, Arc<AsyncMutex<()>>) {
        let mut entries = lock_map(&self.entries);
        let entry = entries.entry(key.to_owned()).or_insert_with(|| Entry {
            lock: Arc::default(),
            claims: 0,
        });
        entry.claims += 1;
        let lock = entry.lock.clone();
        let claim = Claim {
            entries: self.entries.clone(),
            key: key.to_owned(),
        };
        (claim, lock)
    }

    /// Keys someone holds or waits for.
    pub fn keys_in_use(&self) -> usize {
        lock_map(&self.entries).len()
    }
}

/// The map is only ever touched briefly and never left half-updated, so a
/// panic elsewhere while it was locked leaves nothing to distrust.
fn lock_map(entries: &Mutex<HashMap<String, Entry>>) -> MutexGuard<'_, HashMap<String, Entry>> {
    entries.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Whether `future` is ready on its first poll: did it have to wait?
    fn ready_now<F: Future>(future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn the_map_shrinks_back_to_empty_when_guards_drop() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        let all = locks
            .lock_all(&BTreeSet::from(["b".to_owned(), "c".to_owned()]))
            .await;
        assert_eq!(locks.keys_in_use(), 3);
        drop(a);
        assert_eq!(locks.keys_in_use(), 2);
        drop(all);
        assert_eq!(locks.keys_in_use(), 0);
    }

    #[tokio::test]
    async fn a_waiter_keeps_its_key_and_a_cancelled_waiter_leaves_nothing() {
        let locks = KeyedLocks::default();
        let held = locks.lock("a").await;
        let mut waiting = Box::pin(locks.lock("a"));
        assert!(ready_now(waiting.as_mut()).is_none(), "`a` is held");
        drop(held);
        // The waiter's claim keeps the entry alive between holders.
        assert_eq!(locks.keys_in_use(), 1);
        drop(waiting);
        assert_eq!(locks.keys_in_use(), 0);

        let held = locks.lock("a").await;
        let mut waiting = Box::pin(locks.lock("a"));
        assert!(ready_now(waiting.as_mut()).is_none());
        drop(waiting);
        drop(held);
        assert_eq!(locks.keys_in_use(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_tasks_on_the_same_key_take_turns() {
        let locks = KeyedLocks::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = |name: &'static str| {
            let (locks, log) = (locks.clone(), log.clone());
            tokio::spawn(async move {
                let _turn = locks.lock("a").await;
                log.lock().unwrap().push(format!("{name} in"));
                // Chances for the other task to barge in, were it not locked out.
                for _ in 0..20 {
                    tokio::task::yield_now().await;
                }
                log.lock().unwrap().push(format!("{name} out"));
            })
        };
        let (one, two) = (task("one"), task("two"));
        one.await.unwrap();
        two.await.unwrap();
        let log = log.lock().unwrap().clone();
        assert!(
            log == ["one in", "one out", "two in", "two out"]
                || log == ["two in", "two out", "one in", "one out"],
            "turns interleaved: {log:?}"
        );
        assert_eq!(locks.keys_in_use(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_on_different_keys_hold_them_at_once() {
        let locks = KeyedLocks::default();
        // Each task waits, holding its key, until both hold theirs: this
        // only finishes if neither key waits for the other.
        let both_hold = Arc::new(tokio::sync::Barrier::new(2));
        let task = |key: &'static str| {
            let (locks, both_hold) = (locks.clone(), both_hold.clone());
            tokio::spawn(async move {
                let _held = locks.lock(key).await;
                both_hold.wait().await;
            })
        };
        let (a, b) = (task("a"), task("b"));
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(locks.keys_in_use(), 0);
    }

    #[tokio::test]
    async fn a_held_key_makes_only_that_key_wait() {
        let locks = KeyedLocks::default();
        let _a = locks.lock("a").await;
        assert!(ready_now(locks.lock("b")).is_some(), "`b` is free");
        assert!(ready_now(locks.lock("A")).is_some(), "keys are exact");
        assert!(ready_now(locks.lock("a")).is_none(), "`a` is held");
    }

    #[tokio::test]
    async fn overlapping_sets_taken_in_order_do_not_deadlock() {
        let locks = KeyedLocks::default();
        let set = |keys: &[&str]| {
            keys.iter()
                .map(|k| (*k).to_owned())
                .collect::<BTreeSet<_>>()
        };
        let tasks: Vec<_> = [set(&["a", "b", "c"]), set(&["c", "b"]), set(&["b", "a"])]
            .into_iter()
            .map(|keys| {
                let locks = locks.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let _all = locks.lock_all(&keys).await;
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(locks.keys_in_use(), 0);
    }
}
