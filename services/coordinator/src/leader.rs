//! Which coordinator runs the jobs (README, "High availability").
//!
//! With SQLite there is one coordinator and it always leads. Coordinators
//! that share one PostgreSQL elect a leader with a session advisory lock
//! held on a connection of its own: only the leader runs workers, sweeps
//! and timers; every instance accepts webhooks and enqueues durably.
//!
//! The lock lives as long as that connection. A leader killed with -9 loses
//! it as soon as the server sees the connection close (at once on a clean
//! TCP close, within [`SERVER_NOTICES_WITHIN`] through TCP keepalives or
//! the idle session timeout when the peer just vanishes). A follower tries
//! the lock every [`TRY_EVERY`].
//!
//! No job may run on two instances at once, so a leader that can no longer
//! prove it holds the lock stops at once: it pings its lock connection every
//! [`PING_EVERY`], and a ping that fails or takes longer than
//! [`PING_TIMEOUT`] ends its leadership (its running jobs are abandoned, as
//! in a crash). A new leader waits [`SETTLE`] (longer than a live leader
//! needs to notice) before it requeues the jobs that were running and starts
//! its workers, so the old leader has stopped whichever way it lost the lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// The advisory lock's key: any constant; the lock is per database.
const LOCK_KEY: i64 = 0x7265_636f_6e63_696c; // "reconcil"
pub const TRY_EVERY: Duration = Duration::from_secs(1);
pub const PING_EVERY: Duration = Duration::from_secs(1);
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a new leader waits before it runs anything: a live old leader
/// has noticed its loss by then (one ping interval and one ping timeout).
pub const SETTLE: Duration = Duration::from_secs(4);
/// The server drops a vanished leader's session (and lock) after at most
/// this long: keepalive idle 5 s + 3 probes 1 s apart, or 10 s without a
/// ping (`idle_session_timeout`).
pub const SERVER_NOTICES_WITHIN: Duration = Duration::from_secs(10);
/// The ping: this session still holds the lock (a bigint key is split
/// into `classid` and `objid`).
const STILL_HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
     AND granted AND pid = pg_backend_pid() AND objsubid = 1
     AND ((classid::bigint << 32) | objid::bigint) = $1)";
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Whether this instance leads now; cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Leadership {
    leads: watch::Receiver<bool>,
    /// Elected leadership (PostgreSQL), as opposed to the only instance.
    elected: bool,
    /// The sole instance's value never changes; its sender stays so that
    /// waiting for a change waits, instead of failing on a closed channel.
    _sole: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// The only coordinator of its state DB (SQLite): it always leads.
    pub fn sole() -> Self {
        let (tx, leads) = watch::channel(true);
        Self {
            leads,
            elected: false,
            _sole: Some(std::sync::Arc::new(tx)),
        }
    }

    /// Starts campaigning for the lock in database `url`. The lock is held
    /// until `resign` is cancelled (after this instance's jobs stopped) or
    /// the process dies.
    pub fn elect(url: &str, instance: &str, resign: CancellationToken) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("STATE_DB_URL: {e}")))?
            .application_name(&format!("reconciler-coordinator leader lock {instance}"))
            // Server-side bounds on noticing a leader that vanished without
            // closing its connection (see SERVER_NOTICES_WITHIN).
            .options([
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "1"),
                ("tcp_keepalives_count", "3"),
                ("idle_session_timeout", "10s"),
            ]);
        let (tx, leads) = watch::channel(false);
        tokio::spawn(campaign(options, tx, resign));
        Ok(Self {
            leads,
            elected: true,
            _sole: None,
        })
    }

    pub fn leads(&self) -> bool {
        *self.leads.borrow()
    }

    /// Whether leadership is elected among instances (PostgreSQL).
    pub fn elected(&self) -> bool {
        self.elected
    }

    /// Waits until this instance leads (`true`) or stops leading (`false`);
    /// returns at once if it already is so.
    pub async fn wait_for(&mut self, leading: bool) {
        if self.leads.wait_for(|l| *l == leading).await.is_err() {
            // The campaign ended (the process is shutting down): nothing
            // changes any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Takes the lock and keeps it, or waits and tries again, until `resign`.
async fn campaign(
    options: PgConnectOptions,
    leads: watch::Sender<bool>,
    resign: CancellationToken,
) {
    loop {
        let mut conn = match tokio::select! {
            _ = resign.cancelled() => return,
            c = PgConnection::connect_with(&options) => c,
        } {
            Ok(conn) => conn,
            Err(e) => {
                warn!(error = %e, "leader lock: cannot connect to the state DB");
                if sleep_or_resign(RECONNECT_AFTER, &resign).await {
                    return;
                }
                continue;
            }
        };
        match hold(&mut conn, &leads, &resign).await {
            Held::Resigned => {
                // Closing the session is what releases the lock.
                let _ = conn.close().await;
                return;
            }
            Held::Lost(why) => {
                if leads.send_replace(false) {
                    warn!(%why, "leadership lost: jobs stop here");
                    crate::metrics::set_leader(false);
                }
                if sleep_or_resign(RECONNECT_AFTER, &resign).await {
                    return;
                }
            }
        }
    }
}

enum Held {
    Resigned,
    Lost(String),
}

/// On one connection: tries the lock until it is ours, leads while pings
/// answer.
async fn hold(
    conn: &mut PgConnection,
    leads: &watch::Sender<bool>,
    resign: &CancellationToken,
) -> Held {
    loop {
        match query_in_time(conn, "SELECT pg_try_advisory_lock($1)").await {
            Ok(true) => break,
            Ok(false) => {}
            Err(why) => return Held::Lost(why),
        }
        if sleep_or_resign(TRY_EVERY, resign).await {
            return Held::Resigned;
        }
    }
    info!(settle = ?SETTLE, "leader lock taken; waiting for any previous leader to stop");
    if sleep_or_resign(SETTLE, resign).await {
        return Held::Resigned;
    }
    loop {
        match query_in_time(conn, STILL_HELD).await {
            Ok(true) => {}
            Ok(false) => return Held::Lost("the server no longer lists the lock".into()),
            Err(why) => return Held::Lost(why),
        }
        if !leads.send_replace(true) {
            info!("leading: this instance runs the jobs, sweeps and timers");
            crate::metrics::set_leader(true);
        }
        if sleep_or_resign(PING_EVERY, resign).await {
            return Held::Resigned;
        }
    }
}

/// One lock statement, bounded by [`PING_TIMEOUT`]; `Err` says why the
/// connection cannot be trusted any more.
async fn query_in_time(
    conn: &mut PgConnection,
    sql: &'static str,
) -> std::result::Result<bool, String> {
    let query = sqlx::query_scalar::<_, bool>(sql)
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn);
    match tokio::time::timeout(PING_TIMEOUT, query).await {
        Ok(Ok(held)) => Ok(held),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
    }
}

/// Sleeps; `true` if `resign` came first.
async fn sleep_or_resign(duration: Duration, resign: &CancellationToken) -> bool {
    tokio::select! {
        _ = resign.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
