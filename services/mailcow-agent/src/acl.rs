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

/// An owner or grantee doveadm takes as exactly one user: a plain address
/// without `*`, which an address may hold but `doveadm -u` reads as a mask
/// of users (as it would `?`, which no address holds).
pub fn one_user<'a>(what: &str, value: &'a str) -> Result<&'a str, Error> {
    let value = crate::address::plain(what, value)?;
    if value.contains('*') {
        return Err(Error::Permanent(format!(
            "invalid {what} {value:?}: doveadm reads `*` as a mask of users"
        )));
    }
    Ok(value)
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
    let mut acls = match dovecot.observe(owner).await {
        Ok(acls) => {
            report.execs += acls.execs.saturating_sub(1);
            acls
        }
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

    // Folders a change names that do not exist (any more): deleted
    // between the coordinator's observation and now. Nothing can be set
    // there; saying "applied" or "already as asked" would let the
    // coordinator record an entry that does not exist.
    let mut gone: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        note_gone(&mut gone, i, c, &acls);
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
                _ if c.rights.is_some() && gone.contains_key(&i) => {
                    folders_gone(c, owner, &gone[&i], 0)
                }
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
        report.acl_writes += plain.len() as u64;
        let run = match dovecot.apply(owner, &acls, &plain).await {
            Ok((run, execs)) => {
                report.execs += execs;
                run
            }
            Err(e) => {
                let failed: BTreeSet<usize> = ops.iter().map(|(i, _)| *i).collect();
                return changes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if failed.contains(&i) {
                            result(&c.id, e.outcome(), e.to_string())
                        } else {
                            summarize(
                                c,
                                owner,
                                codes.get(&i),
                                changed.get(&i).copied(),
                                gone.get(&i),
                            )
                        }
                    })
                    .collect();
            }
        };
        let mut vanished: BTreeSet<usize> = BTreeSet::new();
        for ((i, op), code) in ops.iter().zip(run) {
            // Gone, or its ACL file changed since we read it: read again.
            if (code == exit::NO_MAILBOX || code == exit::CHANGED) && round == 0 {
                vanished.insert(*i);
                continue;
            }
            // Changed again: someone is busy with it; retry later.
            let code = if code == exit::CHANGED {
                exit::TEMP_FAIL
            } else {
                code
            };
            if code == exit::NO_MAILBOX {
                gone.entry(*i).or_default().insert(op.folder().to_owned());
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
            Ok(again) => {
                report.execs += again.execs.saturating_sub(1);
                acls = again;
                for &i in &vanished {
                    note_gone(&mut gone, i, &changes[i], &acls);
                }
                vanished
                    .iter()
                    .flat_map(|&i| {
                        ops_for(&changes[i], &acls)
                            .into_iter()
                            .map(move |op| (i, op))
                    })
                    .collect()
            }
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
        .map(|(i, c)| {
            summarize(
                c,
                owner,
                codes.get(&i),
                changed.get(&i).copied(),
                gone.get(&i),
            )
        })
        .collect()
}

/// Records the folders `change` names that `acls` does not list.
fn note_gone(
    gone: &mut BTreeMap<usize, BTreeSet<String>>,
    i: usize,
    change: &AclChange,
    acls: &OwnerAcls,
) {
    let missing = change
        .folders
        .iter()
        .filter(|f| !acls.folders.contains_key(*f))
        .cloned();
    let missing: BTreeSet<String> = missing.collect();
    if !missing.is_empty() {
        gone.entry(i).or_default().extend(missing);
    }
}

/// A set on folders that are gone is not applied there: PERMANENT (so the
/// coordinator drops its intent and, next run, forgets the folder), with
/// the folders named.
fn folders_gone(
    c: &AclChange,
    owner: &str,
    gone: &BTreeSet<String>,
    changed: usize,
) -> ChangeResult {
    let names: Vec<&str> = gone.iter().map(String::as_str).collect();
    result(
        &c.id,
        Outcome::Permanent,
        format!(
            "folder gone: {} of {owner} no longer exist(s) (doveadm exit 68); {} not set there (set on {changed} other folder(s))",
            names.join(", "),
            c.grantee
        ),
    )
}

fn summarize(
    c: &AclChange,
    owner: &str,
    codes: Option<&Vec<i64>>,
    changed: Option<usize>,
    gone: Option<&BTreeSet<String>>,
) -> ChangeResult {
    let codes = codes.map(Vec::as_slice).unwrap_or_default();
    let worst = codes
        .iter()
        .copied()
        .find(|&code| code != exit::OK && code != exit::NO_MAILBOX);
    // A removal from a folder that is gone is done: the entry went with it.
    if let (None, Some(gone), Some(_)) = (worst, gone, &c.rights) {
        return folders_gone(c, owner, gone, changed.unwrap_or(0));
    }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use reconciler_runtime::exec::{CommandRunner, ExecError, ExecOutput};

    use super::*;

    /// Answers each exec with the next canned stdout (exit 0).
    struct Scripted(Mutex<Vec<&'static str>>);

    #[async_trait]
    impl CommandRunner for Scripted {
        async fn run(&self, _argv: &[String]) -> Result<ExecOutput, ExecError> {
            let mut outputs = self.0.lock().unwrap();
            assert!(!outputs.is_empty(), "more execs than scripted");
            Ok(ExecOutput {
                stdout: outputs.remove(0).to_owned(),
                stderr: String::new(),
                exit_code: 0,
            })
        }
    }

    /// What the observe script prints for a Maildir++ root `/m`.
    const BOTH: &str = "\u{1e}LISTED\nINBOX\nProjects\n\u{1e}LISTEND\n\u{1e}ROOT /m\n\
                        \u{1e}SAMPLE Projects\n\u{1e}SAMPLEPATH /m/.Projects\n\
                        \u{1e}DIR .\n\u{1e}DIR .Projects\n\u{1e}END\n";
    const INBOX_ONLY: &str =
        "\u{1e}LISTED\nINBOX\n\u{1e}LISTEND\n\u{1e}ROOT /m\n\u{1e}DIR .\n\u{1e}END\n";

    fn change(rights: Option<&[&str]>) -> AclChange {
        AclChange {
            id: "1".into(),
            grantee: "alice@x.org".into(),
            rights: rights.map(|r| r.iter().map(|s| s.to_string()).collect()),
            folders: BTreeSet::from(["Projects".to_owned()]),
        }
    }

    async fn run(outputs: Vec<&'static str>, c: AclChange) -> ChangeResult {
        let dovecot = Dovecot::new(Arc::new(Scripted(Mutex::new(outputs))), "doveadm");
        let mut report = apply_owner(&dovecot, "o@x.org", &[c], false).await;
        report.results.remove(0)
    }

    #[test]
    fn an_owner_or_grantee_names_one_user() {
        assert_eq!(one_user("owner", "o@x.org").unwrap(), "o@x.org");
        for bad in [
            "",
            " o@x.org",
            "*@x.org",
            "o*@x.org",
            "o?@x.org",
            "o",
            "a b@x.org",
        ] {
            let err = one_user("grantee", bad).unwrap_err();
            assert_eq!(err.outcome(), Outcome::Permanent, "{bad:?}");
            assert!(err.to_string().contains("invalid grantee"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_set_on_a_folder_deleted_before_the_write_is_not_applied() {
        // Listed, then `acl set` exits 68, then the folder is not listed.
        let r = run(
            vec![BOTH, "\u{1e}RC 68\n\u{1e}END\n", INBOX_ONLY],
            change(Some(&["lookup", "read"])),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Permanent as i32, "{r:?}");
        assert!(r.message.contains("folder gone: Projects"), "{r:?}");
    }

    #[tokio::test]
    async fn a_set_on_a_folder_already_gone_is_not_applied() {
        let r = run(vec![INBOX_ONLY], change(Some(&["lookup"]))).await;
        assert_eq!(r.outcome, Outcome::Permanent as i32, "{r:?}");
        assert!(r.message.contains("folder gone: Projects"), "{r:?}");
    }

    #[tokio::test]
    async fn a_set_that_keeps_failing_with_68_is_not_applied() {
        let r = run(
            vec![
                BOTH,
                "\u{1e}RC 68\n\u{1e}END\n",
                BOTH,
                "\u{1e}RC 68\n\u{1e}END\n",
            ],
            change(Some(&["lookup"])),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Permanent as i32, "{r:?}");
    }

    /// Records each exec's arguments after the script, and answers like
    /// [`Scripted`].
    struct Recorded(Scripted, Mutex<Vec<Vec<String>>>);

    #[async_trait]
    impl CommandRunner for Recorded {
        async fn run(&self, argv: &[String]) -> Result<ExecOutput, ExecError> {
            // sh -c <script> sh <doveadm> <args…>
            self.1.lock().unwrap().push(argv[5..].to_vec());
            self.0.run(argv).await
        }
    }

    #[tokio::test]
    async fn a_layout_other_than_maildir_plus_plus_goes_through_doveadm() {
        // Dovecot says Projects lives elsewhere than Maildir++ would put it.
        let elsewhere: &'static str = "\u{1e}LISTED\nINBOX\nProjects\n\u{1e}LISTEND\n\
                                       \u{1e}ROOT /m\n\u{1e}SAMPLE Projects\n\
                                       \u{1e}SAMPLEPATH /m/Projects\n\u{1e}DIR .\n\u{1e}END\n";
        let get = "\u{1e}FOLDER INBOX\nID\tGlobal\tRights\n\u{1e}RC 0\n\
                   \u{1e}FOLDER Projects\nID\tGlobal\tRights\n\u{1e}RC 0\n\u{1e}END\n";
        let outputs = vec![elsewhere, get, "\u{1e}RC 0\n\u{1e}END\n"];
        let runner = Arc::new(Recorded(Scripted(Mutex::new(outputs)), Mutex::default()));
        let dovecot = Dovecot::new(runner.clone(), "doveadm");
        let mut report =
            apply_owner(&dovecot, "o@x.org", &[change(Some(&["lookup"]))], false).await;
        let r = report.results.remove(0);
        assert_eq!(r.outcome, Outcome::Applied as i32, "{r:?}");
        let execs = runner.1.lock().unwrap();
        assert_eq!(execs.len(), 3, "{execs:?}");
        assert_eq!(
            execs[2],
            ["o@x.org", "set", "Projects", "user=alice@x.org", "lookup"],
            "written with doveadm acl set"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_utf8_is_left_to_doveadm() {
        // The exec output turned a byte that is not UTF-8 into U+FFFD: the
        // file could not be kept byte-for-byte, so doveadm reads and writes it.
        let observed: &'static str = "\u{1e}LISTED\nINBOX\nProjects\n\u{1e}LISTEND\n\
                                      \u{1e}ROOT /m\n\u{1e}SAMPLE Projects\n\
                                      \u{1e}SAMPLEPATH /m/.Projects\n\u{1e}DIR .\n\
                                      \u{1e}DIR .Projects\n\u{1e}FILE\nuser=j\u{fffd}rg@x.org lr\n\
                                      \u{1e}EOF\n\u{1e}END\n";
        let get = "\u{1e}FOLDER Projects\nID\tGlobal\tRights\n\u{1e}RC 0\n\u{1e}END\n";
        let outputs = vec![observed, get, "\u{1e}RC 0\n\u{1e}END\n"];
        let runner = Arc::new(Recorded(Scripted(Mutex::new(outputs)), Mutex::default()));
        let dovecot = Dovecot::new(runner.clone(), "doveadm");
        let mut report =
            apply_owner(&dovecot, "o@x.org", &[change(Some(&["lookup"]))], false).await;
        let r = report.results.remove(0);
        assert_eq!(r.outcome, Outcome::Applied as i32, "{r:?}");
        let execs = runner.1.lock().unwrap();
        assert_eq!(execs[1], ["o@x.org", "Projects"], "read with acl get");
        assert_eq!(
            execs[2],
            ["o@x.org", "set", "Projects", "user=alice@x.org", "lookup"],
            "written with doveadm acl set"
        );
    }

    #[tokio::test]
    async fn a_file_changed_under_us_is_read_again_and_then_written() {
        let r = run(
            vec![
                BOTH,
                "\u{1e}RC 1001\n\u{1e}END\n",
                BOTH,
                "\u{1e}RC 0\n\u{1e}RECALC 0\n\u{1e}END\n",
            ],
            change(Some(&["lookup"])),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Applied as i32, "{r:?}");
    }

    #[tokio::test]
    async fn a_file_that_keeps_changing_is_transient() {
        let r = run(
            vec![
                BOTH,
                "\u{1e}RC 1001\n\u{1e}END\n",
                BOTH,
                "\u{1e}RC 1001\n\u{1e}END\n",
            ],
            change(Some(&["lookup"])),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Transient as i32, "{r:?}");
    }

    #[tokio::test]
    async fn written_but_not_recalculated_is_not_applied() {
        let r = run(
            vec![BOTH, "\u{1e}RC 0\n\u{1e}RECALC 75\n\u{1e}END\n"],
            change(Some(&["lookup"])),
        )
        .await;
        assert_eq!(r.outcome, Outcome::Transient as i32, "{r:?}");
    }

    #[tokio::test]
    async fn a_removal_from_a_folder_that_is_gone_is_done() {
        let r = run(vec![INBOX_ONLY], change(None)).await;
        assert_eq!(r.outcome, Outcome::Unchanged as i32, "{r:?}");
    }
}
