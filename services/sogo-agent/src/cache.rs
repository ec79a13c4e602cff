//! Evicting SOGo's cached settings (`<uid>+settings`, reference A3) after a
//! write, so SOGo serves the new value at once instead of after the TTL.
//! Never `flush_all`: other users' sessions and caches stay warm.
//!
//! Every eviction is bounded by a short timeout: a stalled memcached
//! (accepts, never answers) must not hold a worker for the whole agent
//! timeout. An eviction that fails or times out is reported back as owed,
//! and the coordinator retries it until it succeeds.

use std::time::Duration;

use async_memcached::AsciiProtocol;
use async_trait::async_trait;

/// Uids whose settings are still cached (or may be), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionFailed {
    pub owed: Vec<String>,
    pub reason: String,
}

#[async_trait]
pub trait SettingsCache: Send + Sync {
    /// Deletes `<uid>+settings` for each uid; a key not cached counts as
    /// evicted. On failure, says which uids are still owed.
    async fn evict_settings(&self, uids: &[&str]) -> Result<(), EvictionFailed>;
}

pub struct Memcached {
    addr: String,
    timeout: Duration,
}

impl Memcached {
    pub fn new(addr: impl Into<String>, timeout: Duration) -> Self {
        Self {
            addr: addr.into(),
            timeout,
        }
    }

    /// Connects and deletes, pushing each evicted uid onto `done`.
    async fn evict<'a>(&self, uids: &[&'a str], done: &mut Vec<&'a str>) -> Result<(), String> {
        let mut client = async_memcached::Client::new(format!("tcp://{}", self.addr))
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        for uid in uids {
            match client.delete(settings_key(uid)).await {
                Ok(()) => {}
                // Not cached: nothing stale to evict.
                Err(async_memcached::Error::Protocol(async_memcached::Status::NotFound)) => {}
                Err(e) => return Err(format!("delete {}: {e}", settings_key(uid))),
            }
            done.push(uid);
        }
        Ok(())
    }
}

#[async_trait]
impl SettingsCache for Memcached {
    async fn evict_settings(&self, uids: &[&str]) -> Result<(), EvictionFailed> {
        if let Some(bad) = uids.iter().find(|u| !valid_key_part(u)) {
            // The ASCII protocol cannot carry it, and sending it could
            // smuggle a second command; nothing of ours is cached under it.
            return Err(EvictionFailed {
                owed: Vec::new(),
                reason: format!("`{}` cannot be a memcached key", bad.escape_debug()),
            });
        }
        let mut done = Vec::new();
        let outcome = tokio::time::timeout(self.timeout, self.evict(uids, &mut done)).await;
        let reason = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => reason,
            Err(_) => format!(
                "memcached {} did not answer within {} ms",
                self.addr,
                self.timeout.as_millis()
            ),
        };
        Err(EvictionFailed {
            owed: uids
                .iter()
                .filter(|u| !done.contains(u))
                .map(|u| (*u).to_owned())
                .collect(),
            reason,
        })
    }
}

fn settings_key(uid: &str) -> String {
    format!("{uid}+settings")
}

/// memcached's ASCII keys: at most 250 bytes, no whitespace or control
/// characters (`+settings` takes 9 of the 250).
pub fn valid_key_part(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 250 - "+settings".len()
        && !uid.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::AsyncReadExt;

    #[test]
    fn keys_that_could_break_the_protocol_are_refused() {
        assert!(valid_key_part("alice@example.org"));
        for bad in ["", "a b", "a\r\nflush_all", "a\tb", &"x".repeat(242)] {
            assert!(!valid_key_part(bad), "{bad:?}");
        }
    }

    /// A listener that accepts and reads but never answers: every
    /// eviction is owed within the timeout, none is lost.
    #[tokio::test]
    async fn a_stalled_memcached_times_out_quickly_and_owes_every_uid() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut sink = [0u8; 1024];
                let _ = socket.read(&mut sink).await;
                held.push(socket);
            }
        });
        let cache = Memcached::new(addr.to_string(), Duration::from_millis(300));
        let start = Instant::now();
        let failed = cache
            .evict_settings(&["a@x.org", "b@x.org"])
            .await
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(failed.owed, ["a@x.org", "b@x.org"]);
        assert!(
            failed.reason.contains("did not answer"),
            "{}",
            failed.reason
        );
    }

    #[tokio::test]
    async fn an_unreachable_memcached_owes_every_uid() {
        // A port nothing listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let cache = Memcached::new(addr.to_string(), Duration::from_secs(2));
        let failed = cache.evict_settings(&["a@x.org"]).await.unwrap_err();
        assert_eq!(failed.owed, ["a@x.org"]);
        assert!(failed.reason.contains("connect"), "{}", failed.reason);
    }
}
