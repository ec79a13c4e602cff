//! What the stalwart-agent reported about domains, accounts and lists.

use std::collections::{BTreeMap, BTreeSet};

/// Stalwart as observed this run. Only what was asked about is present: a
/// missing key was not read (an error for that subject), `None` means
/// Stalwart has no such object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedStalwart {
    /// By domain name: its id, `None` when absent.
    pub domains: BTreeMap<String, Option<String>>,
    pub accounts: BTreeMap<String, Option<ObservedStalwartAccount>>,
    pub lists: BTreeMap<String, Option<ObservedStalwartList>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedStalwartAccount {
    pub id: String,
    /// Sign-in refused (the `authenticate` permission disabled).
    pub suspended: bool,
    pub aliases: BTreeSet<String>,
    /// Bytes; `None`: no quota.
    pub quota: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedStalwartList {
    pub id: String,
    pub recipients: BTreeSet<String>,
}
