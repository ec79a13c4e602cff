//! Evicting SOGo's cached settings (`<uid>+settings`, reference A3) after a
//! write, so SOGo serves the new value at once instead of after the TTL.
//! Never `flush_all`: other users' sessions and caches stay warm.

use async_memcached::AsciiProtocol;
use async_trait::async_trait;

use crate::error::{Error, Result};

#[async_trait]
pub trait SettingsCache: Send + Sync {
    async fn evict_settings(&self, uids: &[&str]) -> Result<()>;
}

pub struct Memcached {
    addr: String,
}

impl Memcached {
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

#[async_trait]
impl SettingsCache for Memcached {
    async fn evict_settings(&self, uids: &[&str]) -> Result<()> {
        let mut client = async_memcached::Client::new(format!("tcp://{}", self.addr))
            .await
            .map_err(|e| Error::Cache(format!("connect {}: {e}", self.addr)))?;
        for uid in uids {
            match client.delete(format!("{uid}+settings")).await {
                Ok(()) => {}
                // Not cached: nothing stale to evict.
                Err(async_memcached::Error::Protocol(async_memcached::Status::NotFound)) => {}
                Err(e) => return Err(Error::Cache(format!("delete {uid}+settings: {e}"))),
            }
        }
        Ok(())
    }
}
