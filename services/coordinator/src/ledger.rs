//! Ownership records, as the planner reads them: what we created, what we
//! meant to create, and what a person made and we must never remove. Pure
//! data; `store` persists it.

use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerState {
    /// Recorded before asking the target to create; the target may or may
    /// not have done it. The next run adopts or retries.
    Intent,
    /// The target confirmed the create.
    Created,
    /// It existed before we wanted it: a person made it. Never removed.
    Foreign,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Created => "created",
            Self::Foreign => "foreign",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "intent" => Some(Self::Intent),
            "created" => Some(Self::Created),
            "foreign" => Some(Self::Foreign),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    pub resource: String,
    pub key: String,
    pub state: LedgerState,
    pub username: String,
    pub groups: BTreeSet<String>,
    pub remote_id: String,
}
