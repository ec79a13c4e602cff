//! Group commit for enqueues (issue 12). A webhook is answered 202 only once
//! its job is durable, and with `synchronous=FULL` every commit is an
//! fsync on SQLite's one write lock, which the running jobs need too. At
//! hundreds of webhooks a second, one transaction each keeps that lock
//! busy and the accepts queue behind each other; here the triggers that
//! arrive while a commit is under way wait for the next one, and a whole
//! group shares one transaction and one fsync.
//!
//! A group that fails as a whole is retried one trigger at a time, so each
//! caller gets its own error (and a 503 names the right cause) while the
//! others still land.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::AnyPool;
use tokio::sync::{Notify, mpsc, oneshot};

use super::jobs::{EnqueueRequest, announce_new_jobs, enqueue_in};
use super::{Backend, Commit, Enqueued, begin_write};
use crate::error::Result;

/// At most this many triggers share a transaction: enough to absorb a
/// burst, few enough that one commit stays short for the jobs waiting on
/// the same lock.
const MAX_GROUP: usize = 128;

/// Room for triggers waiting for the committer; a full queue makes
/// callers wait (backpressure), never drops a trigger.
const QUEUE: usize = 4096;

/// Accepts go first. The writer connection serves everyone in turn, and a
/// webhook's 202 should not wait for every job's bookkeeping queued ahead
/// of it. Other writers line up here one at a time ([`Priority::in_line`]),
/// so at most one of them waits for the connection beside a group, and the
/// one at the front holds back while a group waits ([`Priority::give_way`]):
/// a group waits for the transaction holding the connection, at most one
/// more.
#[derive(Default)]
pub(super) struct Priority {
    waiting: AtomicUsize,
    released: Notify,
    line: tokio::sync::Mutex<()>,
}

impl Priority {
    /// A non-urgent writer's turn to ask for the connection: hold it until
    /// the connection is taken.
    pub async fn in_line(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let turn = self.line.lock().await;
        self.give_way().await;
        turn
    }

    /// Called by every other writer before it queues for the writer.
    pub async fn give_way(&self) {
        loop {
            // Registered before the check, so a release in between wakes it.
            let released = self.released.notified();
            if self.waiting.load(Ordering::Acquire) == 0 {
                return;
            }
            released.await;
        }
    }

    fn urgent(&self) -> Urgent<'_> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Urgent(self)
    }
}

/// A group waiting for the writer; dropped once it has it.
struct Urgent<'a>(&'a Priority);

impl Drop for Urgent<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.released.notify_waiters();
        }
    }
}

/// The writer connection, taken ahead of writers that give way.
async fn begin_urgent(
    writer: &AnyPool,
    backend: Backend,
    priority: &Priority,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    let _urgent = priority.urgent();
    begin_write(writer, backend, Commit::Durable).await
}

struct Pending {
    request: EnqueueRequest,
    reply: oneshot::Sender<Result<Enqueued>>,
}

/// The sending side of the committer task, shared by every clone of a
/// [`super::Store`].
#[derive(Clone)]
pub(super) struct Intake {
    queue: mpsc::Sender<Pending>,
    backend: Backend,
}

impl Intake {
    /// Starts the committer on the current runtime. It ends when the last
    /// [`Intake`] is dropped.
    pub fn start(writer: AnyPool, backend: Backend, priority: Arc<Priority>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(commit_groups(writer, backend, priority, pending));
        Self { queue, backend }
    }

    /// Makes `request` durable in the next group commit. If the committer
    /// is gone (its runtime shut down under a store that lives on), the
    /// trigger commits on its own instead.
    pub async fn submit(&self, writer: &AnyPool, request: EnqueueRequest) -> Result<Enqueued> {
        let (reply, answer) = oneshot::channel();
        match self.queue.send(Pending { request, reply }).await {
            Ok(()) => match answer.await {
                Ok(result) => result,
                // The committer was dropped with the trigger in hand: it
                // may or may not have committed, and committing again is
                // safe (an event pk or a waiting job absorbs a repeat).
                Err(_) => Err(crate::error::Error::Db(sqlx::Error::PoolClosed)),
            },
            Err(mpsc::error::SendError(pending)) => {
                commit_one(writer, self.backend, &Priority::default(), &pending.request).await
            }
        }
    }
}

async fn commit_groups(
    writer: AnyPool,
    backend: Backend,
    priority: Arc<Priority>,
    mut pending: mpsc::Receiver<Pending>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        match commit_group(&writer, backend, &priority, &group).await {
            Ok(results) => {
                for (each, result) in group.drain(..).zip(results) {
                    // A caller that went away has its job anyway.
                    let _ = each.reply.send(Ok(result));
                }
            }
            Err(error) if group.len() == 1 => {
                let each = group.pop().expect("one");
                let _ = each.reply.send(Err(error));
            }
            Err(error) => {
                tracing::warn!(%error, triggers = group.len(), "group commit failed; committing one by one");
                for each in group.drain(..) {
                    let result = commit_one(&writer, backend, &priority, &each.request).await;
                    let _ = each.reply.send(result);
                }
            }
        }
    }
}

async fn commit_group(
    writer: &AnyPool,
    backend: Backend,
    priority: &Priority,
    group: &[Pending],
) -> Result<Vec<Enqueued>> {
    let mut tx = begin_urgent(writer, backend, priority).await?;
    let mut results = Vec::with_capacity(group.len());
    for each in group {
        results.push(enqueue_in(&mut tx, &each.request).await?);
    }
    announce_new_jobs(&mut tx, backend, &results).await?;
    tx.commit().await?;
    Ok(results)
}

async fn commit_one(
    writer: &AnyPool,
    backend: Backend,
    priority: &Priority,
    request: &EnqueueRequest,
) -> Result<Enqueued> {
    let mut tx = begin_urgent(writer, backend, priority).await?;
    let result = enqueue_in(&mut tx, request).await?;
    announce_new_jobs(&mut tx, backend, std::slice::from_ref(&result)).await?;
    tx.commit().await?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn store() -> (Store, tempfile::TempDir) {
        Store::open_temp().await
    }

    fn request(subject: &str, event_pk: Option<&str>) -> EnqueueRequest {
        EnqueueRequest {
            subject: subject.to_owned(),
            force: false,
            trigger: "webhook".to_owned(),
            event_pk: event_pk.map(str::to_owned),
        }
    }

    /// Runs the committer over exactly these triggers, queued before it
    /// starts, so they form one group.
    async fn one_group(store: &Store, requests: Vec<EnqueueRequest>) -> Vec<Result<Enqueued>> {
        let (queue, pending) = mpsc::channel(QUEUE);
        let mut answers = Vec::new();
        for request in requests {
            let (reply, answer) = oneshot::channel();
            queue.send(Pending { request, reply }).await.unwrap();
            answers.push(answer);
        }
        drop(queue);
        commit_groups(
            store.writer.clone(),
            store.backend,
            store.priority.clone(),
            pending,
        )
        .await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        results
    }

    #[tokio::test]
    async fn a_group_sees_its_own_earlier_triggers() {
        let (store, _dir) = store().await;
        let results = one_group(
            &store,
            vec![
                request("user:alice", Some("evt-1")),
                request("user:alice", Some("evt-2")),
                request("user:bob", Some("evt-1")),
                request("user:bob", None),
            ],
        )
        .await;
        let results: Vec<Enqueued> = results.into_iter().map(|r| r.unwrap()).collect();
        let alice = results[0].job_id;
        assert!(!results[0].deduplicated);
        assert_eq!(
            results[1],
            Enqueued {
                job_id: alice,
                deduplicated: true
            },
            "alice's waiting job absorbs her second event"
        );
        assert_eq!(
            results[2],
            Enqueued {
                job_id: alice,
                deduplicated: true
            },
            "an event pk seen earlier in the group maps to its job"
        );
        assert!(!results[3].deduplicated);
        assert_ne!(results[3].job_id, alice);
        for result in &results {
            let job = store.job(result.job_id).await.unwrap().expect("durable");
            assert_eq!(job.state, "queued");
        }
    }

    #[tokio::test]
    async fn a_failing_trigger_fails_alone_and_the_rest_of_its_group_lands() {
        let (store, _dir) = store().await;
        sqlx::query(
            "CREATE TRIGGER boom BEFORE INSERT ON jobs WHEN NEW.subject = 'user:boom'
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        let results = one_group(
            &store,
            vec![
                request("user:alice", Some("evt-a")),
                request("user:boom", Some("evt-boom")),
                request("user:bob", Some("evt-b")),
            ],
        )
        .await;
        let error = results[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("disk on fire"), "{error}");
        for i in [0, 2] {
            let job_id = results[i].as_ref().unwrap().job_id;
            assert!(store.job(job_id).await.unwrap().is_some(), "durable");
        }
        let events: Vec<String> =
            sqlx::query_scalar("SELECT event_pk FROM webhook_events ORDER BY event_pk")
                .fetch_all(&store.reader)
                .await
                .unwrap();
        assert_eq!(events, ["evt-a", "evt-b"], "nothing of the failed trigger");
    }

    #[tokio::test]
    async fn writers_give_way_while_a_group_waits_and_go_when_it_has_the_writer() {
        let priority = Arc::new(Priority::default());
        let urgent = priority.urgent();
        let writer = tokio::spawn({
            let priority = priority.clone();
            async move {
                let _turn = priority.in_line().await;
            }
        });
        // The writer cannot pass while the group waits…
        tokio::task::yield_now().await;
        assert!(!writer.is_finished());
        assert!(
            priority.line.try_lock().is_err(),
            "the writer holds its place in line"
        );
        // …and goes once the group has the connection.
        drop(urgent);
        writer.await.unwrap();
        assert_eq!(priority.waiting.load(Ordering::Acquire), 0);
        // With nothing urgent, nobody waits.
        drop(priority.in_line().await);
    }

    #[tokio::test]
    async fn concurrent_enqueues_each_get_a_durable_answer() {
        let (store, _dir) = store().await;
        let handles: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let subject = crate::subject::Subject::User(format!("u{}", i % 50));
                    store
                        .enqueue(&subject, false, "webhook", Some(&format!("evt-{i}")))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut jobs = std::collections::BTreeSet::new();
        for handle in handles {
            jobs.insert(handle.await.unwrap().job_id);
        }
        assert_eq!(jobs.len(), 50, "one waiting job per subject");
        let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(recorded, 200, "every event pk is remembered");
    }
}
