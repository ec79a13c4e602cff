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
    /// Failed changes by `(<resource>.<action>, cause)`, folded into one
    /// warning per cause at the end of the run.
    #[serde(skip)]
    pub(crate) failure_causes: BTreeMap<(String, String), u64>,
    /// Removals the plan's guards held back.
    #[serde(skip)]
    pub removals_held: usize,
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

    /// Counts a change that failed for good under its cause: the agent's
    /// message with addresses and numbers taken out, so one cause shared
    /// by many objects is one line.
    pub(crate) fn failed(&mut self, step: &Step, message: &str) {
        let what = format!("{}.{}", step.resource.as_str(), step.action.as_str());
        *self
            .failure_causes
            .entry((what, cause(message)))
            .or_default() += 1;
    }

    /// One warning per cause, with its count and, where one is known, the
    /// likely fix (`hint`).
    pub(crate) fn explain_failures(&mut self, hint: impl Fn(&str) -> Option<&'static str>) {
        for ((what, cause), count) in std::mem::take(&mut self.failure_causes) {
            let fix = hint(&cause).map(|h| format!(" — {h}")).unwrap_or_default();
            self.warnings
                .push(format!("{count} {what} change(s) failed: {cause}{fix}"));
        }
    }

    pub fn summary(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A failure message without what differs from object to object.
pub fn cause(message: &str) -> String {
    message
        .split_whitespace()
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
            if bare.contains('@') {
                word.replace(bare, "<address>")
            } else if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_digit()) {
                word.replace(bare, "<n>")
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cause_shared_by_many_objects_is_one_warning() {
        assert_eq!(
            cause("edit/mailbox alice@example.com: mailbox_quota_left_exceeded (id 42)"),
            "edit/mailbox <address>: mailbox_quota_left_exceeded (id <n>)"
        );
    }
}
