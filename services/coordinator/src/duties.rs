//! What only the leader does (workers, sweeps, timers), started when this
//! instance comes to lead and stopped when it stops leading
//! ([`crate::leader`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::engine::Engine;
use crate::leader::Leadership;
use crate::store::JOBS_CHANNEL;

/// How long a new leader waits between tries of the takeover's writes.
const RETRY_TAKEOVER: Duration = Duration::from_secs(1);
/// How long before listening again after the listening connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(5);

/// Runs the duties `start` spawns while this instance leads, until
/// `shutdown`. On shutdown the duties finish what they are doing (the
/// workers their jobs); when leadership is lost they are aborted at once,
/// as a crash would stop them, because another instance is about to run
/// those jobs.
pub async fn lead<F>(
    mut leadership: Leadership,
    engine: Arc<Engine>,
    max_attempts: i64,
    shutdown: CancellationToken,
    start: F,
) where
    F: Fn(CancellationToken) -> Vec<JoinHandle<()>>,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leadership.wait_for(true) => {}
        }
        if !take_over(&engine, max_attempts, &leadership, &shutdown).await {
            continue;
        }
        let duties = shutdown.child_token();
        let tasks = start(duties.clone());
        tokio::select! {
            _ = shutdown.cancelled() => {
                for task in tasks {
                    let _ = task.await;
                }
                return;
            }
            _ = leadership.wait_for(false) => {
                duties.cancel();
                for task in &tasks {
                    task.abort();
                }
                for task in tasks {
                    let _ = task.await;
                }
                warn!("duties stopped: this instance no longer leads");
            }
        }
    }
}

/// Queues again the jobs the previous leader (or this process before a
/// restart) left running, and forgets the directory snapshot held in
/// memory. `false` if leadership or the process ended first.
async fn take_over(
    engine: &Engine,
    max_attempts: i64,
    leadership: &Leadership,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        if shutdown.is_cancelled() || !leadership.leads() {
            return false;
        }
        match engine.store().requeue_interrupted(max_attempts).await {
            Ok(interrupted) => {
                if interrupted.requeued > 0 {
                    info!(
                        requeued = interrupted.requeued,
                        "jobs interrupted by the last leader's end are queued again"
                    );
                }
                if interrupted.gave_up > 0 {
                    warn!(
                        failed = interrupted.gave_up,
                        max_attempts, "jobs that had used every attempt are failed, not run again"
                    );
                }
                engine.forget_directory_snapshot().await;
                return true;
            }
            Err(e) => {
                error!(error = %e, "cannot requeue interrupted jobs; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(RETRY_TAKEOVER) => {}
                }
            }
        }
    }
}

/// Wakes this leader's workers when any instance queues a job (PostgreSQL
/// `LISTEN` on [`JOBS_CHANNEL`]), so a webhook another instance accepted
/// starts at once rather than at the workers' next idle look. A lost
/// notification costs only that wait.
pub async fn wake_on_enqueue(url: String, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let failed = tokio::select! {
            _ = stop.cancelled() => return,
            e = listen(&url, &wake) => e,
        };
        warn!(error = %failed, "cannot listen for new jobs; the workers look every few seconds");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RELISTEN_AFTER) => {}
        }
    }
}

/// Listens until the connection fails; wakes a worker per notification.
async fn listen(url: &str, wake: &Notify) -> sqlx::Error {
    let mut listener = match PgListener::connect(url).await {
        Ok(listener) => listener,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(JOBS_CHANNEL).await {
        return e;
    }
    loop {
        if let Err(e) = listener.recv().await {
            return e;
        }
        wake.notify_one();
    }
}
