//! In-memory stand-ins for SOGo's profile table ([`ProfileStore`]) and its
//! memcached ([`SettingsCache`]), for tests that run the agent in process.
//! Delegations are kept as owner → delegates; a switch makes every profile
//! call fail the way MySQL can.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::cache::{EvictionFailed, SettingsCache};
use crate::error::{Error, Result};
use crate::profiles::{OwnerDelegation, ProfileStore};

type Fault = Box<dyn Fn() -> Error + Send + Sync>;

#[derive(Default)]
pub struct FakeProfiles {
    delegate_to: Mutex<BTreeMap<String, BTreeSet<String>>>,
    fault: Mutex<Option<Fault>>,
}

impl FakeProfiles {
    /// Every call fails with `fault()` from now on (database down, access denied…).
    pub fn fail_with(&self, fault: impl Fn() -> Error + Send + Sync + 'static) {
        *lock(&self.fault) = Some(Box::new(fault));
    }

    fn check(&self) -> Result<()> {
        match &*lock(&self.fault) {
            Some(fault) => Err(fault()),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ProfileStore for FakeProfiles {
    async fn delegations(&self, owners: &[String]) -> Result<BTreeMap<String, OwnerDelegation>> {
        self.check()?;
        let delegations = lock(&self.delegate_to);
        Ok(owners
            .iter()
            .map(|owner| {
                let delegates = delegations.get(owner).into_iter().flatten();
                let state = OwnerDelegation {
                    delegate_to: delegates.cloned().collect(),
                    error: None,
                };
                (owner.clone(), state)
            })
            .collect())
    }

    async fn set_delegation(&self, owner: &str, delegate: &str, add: bool) -> Result<bool> {
        self.check()?;
        let mut delegations = lock(&self.delegate_to);
        let delegates = delegations.entry(owner.to_owned()).or_default();
        Ok(if add {
            delegates.insert(delegate.to_owned())
        } else {
            delegates.remove(delegate)
        })
    }
}

/// A memcached that evicts whatever it is asked to.
#[derive(Default)]
pub struct FakeCache;

#[async_trait]
impl SettingsCache for FakeCache {
    async fn evict_settings(&self, _uids: &[&str]) -> Result<(), EvictionFailed> {
        Ok(())
    }
}

/// Nothing here is left half-updated by a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
