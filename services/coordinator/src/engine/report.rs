//! What a run reports: counts by resource, action and outcome. No secrets,
//! no user data.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::Step;

/// Counts by `<resource>.<action>.<outcome>`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub planned: usize,
    pub outcomes: BTreeMap<String, u64>,
    pub transient_failures: u64,
    pub permanent_failures: u64,
    pub warnings: Vec<String>,
    /// What mailbox ACLs cost on the Dovecot side: doveadm execs (observe
    /// and apply) and `acl set`/`acl delete` commands.
    pub doveadm_execs: u64,
    pub doveadm_acl_writes: u64,
    /// Changes not sent because the same change failed permanently before
    /// and its backoff has not run out.
    pub backing_off: u64,
    /// The state DB snapshot taken before this run's removals, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_backup: Option<String>,
}

impl RunReport {
    pub(crate) fn count(&mut self, step: &Step, outcome: &str) {
        self.count_as(
            &format!("{}.{}", step.resource.as_str(), step.action.as_str()),
            outcome,
        );
    }

    /// Counts one `<what>.<outcome>`.
    pub(crate) fn count_as(&mut self, what: &str, outcome: &str) {
        *self
            .outcomes
            .entry(format!("{what}.{outcome}"))
            .or_default() += 1;
    }

    /// A step that was not done and is worth retrying soon.
    pub(crate) fn transient(&mut self, step: &Step) {
        self.count(step, "transient");
        self.transient_failures += 1;
    }

    pub fn summary(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
