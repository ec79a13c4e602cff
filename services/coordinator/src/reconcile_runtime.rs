//! The threads jobs run on, apart from the ones that answer webhooks.
//!
//! A webhook's 202 is owed within milliseconds (issue 12: p99 under 5 ms
//! at 500 a second); a job may plan over 10,000 users for seconds. On one
//! runtime they share threads and cores, and an accept waits for whatever
//! job holds the core it needs: with jobs running flat out on two cores
//! the accept's p99 was 9 ms, and a thread of its own for HTTP did not
//! help (the kernel still shares the cores evenly). So jobs run on a
//! runtime of their own whose threads have a lower scheduling priority
//! (a higher nice value): they take every core nothing else wants, and
//! yield it the moment an accept needs it.
//!
//! Threads a job starts (SQLite connections opened on its behalf, blocking
//! tasks) inherit the priority; the state DB's writer, which accepts
//! share, is opened at start on the main runtime and never recycled
//! (`store::backend`).

use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// A multi-threaded runtime whose threads run at a nice value of their own
/// (`JOB_THREAD_NICE`, default 10: a thread at 0 outweighs one at 10 about
/// nine to one when both want a core; lowering a thread's own priority
/// needs no privilege). Shut down
/// without waiting when dropped (it may be dropped inside the main
/// runtime, where blocking is not allowed); the coordinator stops its
/// workers before that.
pub struct ReconcileRuntime(Option<Runtime>);

impl ReconcileRuntime {
    pub fn start(threads: usize, nice: i32) -> io::Result<Self> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("reconcile")
            .on_thread_start(move || {
                if let Err(e) = lower_this_threads_priority(nice) {
                    tracing::warn!(error = %e, "job thread keeps the default priority");
                }
            })
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    pub fn handle(&self) -> Handle {
        self.0
            .as_ref()
            .expect("only taken when dropped")
            .handle()
            .clone()
    }
}

impl Drop for ReconcileRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sets the calling thread's nice value to `nice` unless it is already
/// lower in priority (on Linux a thread's own; other threads of the process
/// keep theirs).
#[cfg(target_os = "linux")]
fn lower_this_threads_priority(nice: i32) -> io::Result<()> {
    let nice = nice.max(this_threads_nice()?);
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_nice: i32) -> io::Result<()> {
    Ok(())
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
fn this_threads_nice() -> io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_below_the_threads_that_answer_webhooks() {
        let here = this_threads_nice().unwrap();
        let jobs = ReconcileRuntime::start(2, 10).unwrap();
        let on_job_thread = jobs
            .handle()
            .spawn(async { this_threads_nice().unwrap() })
            .await
            .unwrap();
        assert_eq!(on_job_thread, here.max(10));
        assert_eq!(
            this_threads_nice().unwrap(),
            here,
            "the caller's thread keeps its own"
        );
        let blocking = jobs
            .handle()
            .spawn_blocking(|| this_threads_nice().unwrap())
            .await
            .unwrap();
        assert_eq!(blocking, on_job_thread, "a job's blocking work too");
        drop(jobs);
    }
}
