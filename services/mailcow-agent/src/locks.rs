//! Per-object mutual exclusion. Mailcow's sender_acl edit replaces the whole
//! list, so two read-modify-write cycles on one mailbox must not interleave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for and holds the lock of `key` until the guard drops.
    /// Waiters are served in arrival order (tokio's mutex is fair).
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Forget locks nobody holds or waits for, so the map stays small.
            if locks.len() > 1024 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(key.to_ascii_lowercase()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_serialises_other_keys_do_not() {
        let locks = KeyedLocks::default();
        let held = locks.lock("a@x").await;
        // Another key is free while `a@x` is held.
        let _other = locks.lock("b@x").await;
        // The same key (any case) is not.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock("A@X"));
        assert!(waiting.await.is_err());
        drop(held);
        let _again = locks.lock("a@x").await;
    }
}
