//! Per-user locks inside one coordinator, so a user job and a group job that
//! both touch alice never apply at the same time. `lock_all` takes them in
//! sorted order, so two runs can never wait on each other in a cycle; a
//! user's entry goes when no run holds or waits for it.

pub use reconciler_runtime::locks::KeyedLocks as KeyLocks;
