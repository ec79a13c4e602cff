//! Catching up on lost webhooks: Authentik's events API read since the
//! last event seen, on start and then every `EVENTS_CATCHUP_SECONDS`, and
//! the subjects of user and group changes queued like webhooks are.
//!
//! - Deduplication: each event is queued with its pk through the same
//!   `webhook_events` table a delivered webhook uses, so an event both
//!   delivered and caught up makes one job.
//! - Position: the newest event seen (`created` + pk) in `meta`; advanced
//!   only after a whole pass succeeded, so a failed pass is simply read
//!   again next tick (its queued events deduplicate).
//! - First start without a position: begins at Authentik's newest event
//!   (its clock, not ours); history is not replayed, the sweep covers it.
//! - Cost: one request per tick when nothing happened; pages are followed
//!   until an event older than the position, at most [`MAX_PAGES`].

mod mapping;
mod position;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::authentik::EventSource;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::subject::Subject;

pub use mapping::subject_of;
pub use position::{Position, parse_timestamp};

/// The trigger recorded on jobs the catch-up queues.
pub const TRIGGER: &str = "catchup";

/// Beyond this many pages in one pass (10,000 events at Authentik's
/// maximum page size) a full sweep is cheaper than one job per subject.
pub const MAX_PAGES: u64 = 100;

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Event pages requested.
    pub pages: u64,
    /// Events at or after the position.
    pub read: usize,
    /// New jobs (not joined to a queued job or an earlier delivery).
    pub queued: usize,
    /// Too many events: a sweep was queued instead of reading further.
    pub swept: bool,
}

pub struct CatchUp {
    pub source: Arc<dyn EventSource>,
    pub store: Store,
    pub wake: Arc<Notify>,
}

impl CatchUp {
    /// Runs a pass at once, then every `interval`; failures are logged
    /// and the next tick tries again.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.pass().await {
                Ok(pass) if pass.queued > 0 || pass.swept => info!(
                    read = pass.read,
                    queued = pass.queued,
                    swept = pass.swept,
                    "caught up on Authentik events"
                ),
                Ok(pass) => debug!(
                    read = pass.read,
                    pages = pass.pages,
                    "no new Authentik events"
                ),
                Err(error) => warn!(
                    %error,
                    "reading Authentik's events failed; retried next tick (the token needs view_event)"
                ),
            }
        }
    }

    /// One pass: every event at or after the position, newest first.
    pub async fn pass(&self) -> Result<Pass> {
        let Some(seen) = Position::load(&self.store).await? else {
            return self.start_from_now().await;
        };
        let mut pass = Pass::default();
        let mut newest = seen.clone();
        let mut page = 1;
        loop {
            let listing = self.source.model_events(page).await?;
            pass.pages += 1;
            let mut reached_seen = false;
            for event in &listing.results {
                let at = parse_timestamp(&event.created)?;
                if !seen.admits(at) {
                    reached_seen = true;
                    continue;
                }
                pass.read += 1;
                newest = newest.max(Position::of(&event.created, &event.pk)?);
                if event.pk == seen.pk {
                    continue;
                }
                if let Some(subject) = subject_of(event) {
                    pass.queued += self.queue(&subject, Some(&event.pk)).await?;
                }
            }
            let next = listing.pagination.next;
            if reached_seen || next == 0 {
                break;
            }
            if next <= page {
                return Err(Error::Authentik(format!(
                    "events page {page} named page {next} as the next"
                )));
            }
            if pass.pages >= MAX_PAGES {
                warn!(
                    pages = pass.pages,
                    "too many Authentik events to catch up one by one; a full sweep is queued"
                );
                pass.queued += self.queue(&Subject::All, None).await?;
                pass.swept = true;
                break;
            }
            page = next;
        }
        if pass.queued > 0 {
            self.wake.notify_one();
        }
        if newest != seen {
            newest.save(&self.store).await?;
        }
        Ok(pass)
    }

    /// 1 if a new job was queued, 0 if it joined one or was seen before.
    async fn queue(&self, subject: &Subject, event_pk: Option<&str>) -> Result<usize> {
        let job = self
            .store
            .enqueue(subject, false, TRIGGER, event_pk)
            .await?;
        Ok(usize::from(!job.deduplicated))
    }

    /// The first start: remember Authentik's newest event without
    /// replaying anything older.
    async fn start_from_now(&self) -> Result<Pass> {
        let listing = self.source.model_events(1).await?;
        let start = match listing.results.first() {
            Some(newest) => Position::of(&newest.created, &newest.pk)?,
            None => Position::origin(),
        };
        start.save(&self.store).await?;
        info!(created = %start.created, "events catch-up starts at Authentik's newest event; older ones are left to the sweep");
        Ok(Pass {
            pages: 1,
            ..Pass::default()
        })
    }
}

#[cfg(test)]
mod tests;
