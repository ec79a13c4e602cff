//! Per-user locks inside one coordinator, so a user job and a group job that
//! both touch alice never apply at the same time. Locks are taken in sorted
//! order, so two runs can never wait on each other in a cycle.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Clone, Default)]
pub struct KeyLocks {
    inner: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
}

pub struct Held {
    _guards: Vec<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock_all(&self, keys: &BTreeSet<String>) -> Held {
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            let lock = {
                let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(key.clone()).or_default().clone()
            };
            guards.push(lock.lock_owned().await);
        }
        Held { _guards: guards }
    }
}
