//! What the client sent to Synapse, by kind of call, and how often it was
//! told to slow down: for the agent's metrics and the benchmark's "Synapse
//! calls by kind".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// HTTP requests sent, by call (`kick`, `room_state`, …); a request
    /// repeated after a 429 counts again.
    pub calls: BTreeMap<&'static str, u64>,
    /// 429 `M_LIMIT_EXCEEDED` answers that were waited out.
    pub rate_limit_waits: u64,
    /// Time spent waiting them out.
    pub rate_limit_waited: Duration,
}

impl CallStats {
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters(Mutex<CallStats>);

impl Counters {
    pub(crate) fn call(&self, call: &'static str) {
        self.update(|s| *s.calls.entry(call).or_default() += 1);
    }

    pub(crate) fn waited(&self, wait: Duration) {
        self.update(|s| {
            s.rate_limit_waits += 1;
            s.rate_limit_waited += wait;
        });
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        // A poisoned lock only means a panic elsewhere mid-update of counters.
        match self.0.lock() {
            Ok(stats) => stats.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut CallStats)) {
        match self.0.lock() {
            Ok(mut stats) => f(&mut stats),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}
