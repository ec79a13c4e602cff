//! Mailbox ACL changes, batched per owner: one exec reads every folder's
//! ACL, one exec runs every `acl set`/`acl delete` the owner's changes need.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::agent::{ChangeResult, Outcome};

use crate::dovecot::{AclOp, Dovecot, OwnerAcls, exit};
use crate::error::Error;

/// One requested change on an owner's folders.
#[derive(Clone, Debug)]
pub struct AclChange {
    pub id: String,
    pub grantee: String,
    /// `None`: remove the grantee's entries.
    pub rights: Option<BTreeSet<String>>,
    /// Only these folders; empty means all.
    pub folders: BTreeSet<String>,
}

/// The operations `change` needs on the folders in `acls`.
fn ops_for(change: &AclChange, acls: &OwnerAcls) -> Vec<AclOp> {
    acls.rights_of(&change.grantee)
        .into_iter()
        .filter(|(folder, _)| change.folders.is_empty() || change.folders.contains(*folder))
        .filter_map(|(folder, have)| match &change.rights {
            Some(want) if &have != want => Some(AclOp::Set {
                folder: folder.to_owned(),
                grantee: change.grantee.clone(),
                rights: want.clone(),
            }),
            None if !have.is_empty() => Some(AclOp::Delete {
                folder: folder.to_owned(),
                grantee: change.grantee.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn result(id: &str, outcome: Outcome, message: impl Into<String>) -> ChangeResult {
    ChangeResult {
        id: id.to_owned(),
        outcome: outcome as i32,
        message: message.into(),
        ..Default::default()
    }
}

/// What one owner's batch produced and cost.
#[derive(Debug, Default)]
pub struct OwnerReport {
    /// One result per change, in order.
    pub results: Vec<ChangeResult>,
    pub execs: u64,
    /// `acl set` / `acl delete` commands run.
    pub acl_writes: u64,
}

/// Applies `changes` to `owner`'s folders. Nothing is reported applied
/// unless doveadm exited 0 for it.
pub async fn apply_owner(
    dovecot: &Dovecot,
    owner: &str,
    changes: &[AclChange],
    dry_run: bool,
) -> OwnerReport {
    let mut report = OwnerReport::default();
    report.results = apply_counted(dovecot, owner, changes, dry_run, &mut report).await;
    report
}

async fn apply_counted(
    dovecot: &Dovecot,
    owner: &str,
    changes: &[AclChange],
    dry_run: bool,
    report: &mut OwnerReport,
) -> Vec<ChangeResult> {
    let fail_all = |e: Error| -> Vec<ChangeResult> {
        changes
            .iter()
            .map(|c| result(&c.id, e.outcome(), e.to_string()))
            .collect()
    };
    report.execs += 1;
    let acls = match dovecot.observe(owner).await {
        Ok(acls) => acls,
        Err(e) => return fail_all(e),
    };
    if !acls.exists {
        return changes
            .iter()
            .map(|c| match c.rights {
                Some(_) => result(
                    &c.id,
                    Outcome::Permanent,
                    format!("Dovecot does not know {owner}, or it is inactive (doveadm exit 67)"),
                ),
                None => result(
                    &c.id,
                    Outcome::Unchanged,
                    format!("{owner} is gone from Dovecot"),
                ),
            })
            .collect();
    }

    let mut ops: Vec<(usize, AclOp)> = changes
        .iter()
        .enumerate()
        .flat_map(|(i, c)| ops_for(c, &acls).into_iter().map(move |op| (i, op)))
        .collect();
    let folders_touched =
        |i: usize, ops: &[(usize, AclOp)]| ops.iter().filter(|(j, _)| *j == i).count();

    if dry_run {
        return changes
            .iter()
            .enumerate()
            .map(|(i, c)| match folders_touched(i, &ops) {
                0 => result(&c.id, Outcome::Unchanged, "every folder already as asked"),
                n => result(
                    &c.id,
                    Outcome::DryRun,
                    format!("would change {n} folder(s) of {owner}"),
                ),
            })
            .collect();
    }

    // Exit codes per change; a change with no ops stays empty (unchanged).
    let mut codes: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut changed: BTreeMap<usize, usize> = BTreeMap::new();
    // Two rounds at most: a folder deleted between listing and writing
    // (exit 68) sends us back to list again.
    for round in 0..2 {
        if ops.is_empty() {
            break;
        }
        let plain: Vec<AclOp> = ops.iter().map(|(_, op)| op.clone()).collect();
        report.execs += 1;
        report.acl_writes += plain.len() as u64;
        let run = match dovecot.apply(owner, &plain).await {
            Ok(run) => run,
            Err(e) => {
                let failed: BTreeSet<usize> = ops.iter().map(|(i, _)| *i).collect();
                return changes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if failed.contains(&i) {
                            result(&c.id, e.outcome(), e.to_string())
                        } else {
                            summarize(c, owner, codes.get(&i), changed.get(&i).copied())
                        }
                    })
                    .collect();
            }
        };
        let mut vanished: BTreeSet<usize> = BTreeSet::new();
        for ((i, _), code) in ops.iter().zip(run) {
            if code == exit::NO_MAILBOX && round == 0 {
                vanished.insert(*i);
                continue;
            }
            if code == exit::OK {
                *changed.entry(*i).or_default() += 1;
            }
            codes.entry(*i).or_default().push(code);
        }
        if vanished.is_empty() {
            break;
        }
        report.execs += 1;
        ops = match dovecot.observe(owner).await {
            Ok(acls) => vanished
                .iter()
                .flat_map(|&i| {
                    ops_for(&changes[i], &acls)
                        .into_iter()
                        .map(move |op| (i, op))
                })
                .collect(),
            Err(e) => {
                for i in vanished {
                    codes.entry(i).or_default().push(match e.outcome() {
                        Outcome::Transient => exit::TEMP_FAIL,
                        _ => -1,
                    });
                }
                break;
            }
        };
    }
    changes
        .iter()
        .enumerate()
        .map(|(i, c)| summarize(c, owner, codes.get(&i), changed.get(&i).copied()))
        .collect()
}

fn summarize(
    c: &AclChange,
    owner: &str,
    codes: Option<&Vec<i64>>,
    changed: Option<usize>,
) -> ChangeResult {
    let codes = codes.map(Vec::as_slice).unwrap_or_default();
    let worst = codes
        .iter()
        .copied()
        .find(|&code| code != exit::OK && code != exit::NO_MAILBOX);
    match worst {
        None if changed.unwrap_or(0) == 0 => {
            result(&c.id, Outcome::Unchanged, "every folder already as asked")
        }
        None => {
            let verb = if c.rights.is_some() {
                "set on"
            } else {
                "removed from"
            };
            result(
                &c.id,
                Outcome::Applied,
                format!(
                    "{} {verb} {} folder(s) of {owner}",
                    c.grantee,
                    changed.unwrap_or(0)
                ),
            )
        }
        Some(exit::TEMP_FAIL) => result(
            &c.id,
            Outcome::Transient,
            "doveadm: temporary failure (exit 75)",
        ),
        Some(exit::NO_USER) => result(
            &c.id,
            Outcome::Permanent,
            format!("doveadm: {owner} is unknown or inactive (exit 67)"),
        ),
        Some(exit::USAGE) => result(
            &c.id,
            Outcome::Permanent,
            "doveadm rejected the command as invalid (exit 64); this is a bug in the agent",
        ),
        Some(code) => result(&c.id, Outcome::Permanent, format!("doveadm exited {code}")),
    }
}
