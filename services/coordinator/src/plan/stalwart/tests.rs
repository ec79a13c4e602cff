use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::desired::{DesiredState, StalwartAccountWant, StalwartListWant};
use crate::ledger::{LedgerRow, LedgerState, keys};
use crate::observed::{Observed, ObservedStalwart, ObservedStalwartAccount, ObservedStalwartList};
use crate::plan::{Action, GraceClock, Guards, Plan, Resource, Scope, plan_at};

const ALICE: &str = "alice@example.com";
const TEAM: &str = "team@example.com";
const HOUR_MS: i64 = 3_600_000;

fn desired(active: Option<bool>) -> DesiredState {
    let mut d = DesiredState::default();
    d.stalwart.domains.insert("example.com".into());
    d.stalwart.delete_after = Some(Duration::from_secs(3600));
    if let Some(active) = active {
        d.stalwart.accounts.insert(
            ALICE.into(),
            StalwartAccountWant {
                address: ALICE.into(),
                user: "alice".into(),
                active,
                quota: Some(1 << 30),
                aliases: BTreeSet::from(["a.smith@example.com".into()]),
                groups: crate::group_set::GroupSet::from(["g1"]),
                keep_aliases: false,
            },
        );
    }
    d
}

fn account(suspended: bool, aliases: &[&str]) -> Option<ObservedStalwartAccount> {
    Some(ObservedStalwartAccount {
        id: "acc1".into(),
        suspended,
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        quota: Some(1 << 30),
    })
}

fn observed(alice: Option<ObservedStalwartAccount>) -> Observed {
    Observed {
        stalwart: Some(ObservedStalwart {
            domains: BTreeMap::from([("example.com".to_owned(), Some("d1".to_owned()))]),
            accounts: BTreeMap::from([(ALICE.to_owned(), alice)]),
            lists: BTreeMap::from([(TEAM.to_owned(), None)]),
        }),
        ..Observed::default()
    }
}

fn row(resource: Resource, key: crate::ledger::LedgerKey, state: LedgerState) -> LedgerRow {
    LedgerRow {
        resource: resource.as_str().into(),
        key,
        state,
        username: "alice".into(),
        groups: crate::group_set::GroupSet::from(["g1"]),
        remote_id: if resource == Resource::StalwartAccount {
            "acc1".into()
        } else {
            String::new()
        },
    }
}

/// Alice's account, its alias and (optionally) our suspension, all ours.
fn owned(suspended_by_us: bool) -> Vec<LedgerRow> {
    let mut rows = vec![
        row(
            Resource::StalwartAccount,
            keys::stalwart(ALICE),
            LedgerState::Created,
        ),
        row(
            Resource::StalwartAlias,
            keys::stalwart_alias(ALICE, "a.smith@example.com"),
            LedgerState::Created,
        ),
    ];
    if suspended_by_us {
        rows.push(row(
            Resource::StalwartSuspension,
            keys::stalwart(ALICE),
            LedgerState::Created,
        ));
    }
    rows
}

fn at(now: i64, due: Option<i64>) -> GraceClock {
    GraceClock {
        now_millis: now,
        due: due
            .map(|d| {
                (
                    (
                        Resource::StalwartAccount.as_str().to_owned(),
                        keys::stalwart(ALICE).to_string(),
                    ),
                    d,
                )
            })
            .into_iter()
            .collect(),
    }
}

fn run(d: &DesiredState, o: &Observed, ledger: &[LedgerRow], clock: &GraceClock) -> Plan {
    plan_at(d, o, ledger, clock, &Scope::All, &Guards::default())
}

fn actions(p: &Plan) -> Vec<(Resource, Action)> {
    p.steps.iter().map(|s| (s.resource, s.action)).collect()
}

const IN_SYNC: &[&str] = &["a.smith@example.com"];

#[test]
fn a_member_gets_an_account_with_their_aliases_and_a_second_run_does_nothing() {
    let mut o = observed(None);
    o.stalwart
        .as_mut()
        .unwrap()
        .domains
        .insert("example.com".into(), None);
    let p = run(&desired(Some(true)), &o, &[], &at(0, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::StalwartDomain, Action::Create),
            (Resource::StalwartAccount, Action::Create),
            (Resource::StalwartAlias, Action::Create),
        ]
    );
    let p = run(
        &desired(Some(true)),
        &observed(account(false, IN_SYNC)),
        &owned(false),
        &at(0, None),
    );
    assert_eq!(actions(&p), []);
}

#[test]
fn a_persons_account_is_left_alone_unless_adoption_is_on() {
    let d = desired(Some(true));
    let p = run(&d, &observed(account(false, &[])), &[], &at(0, None));
    assert_eq!(
        actions(&p),
        [(Resource::StalwartAccount, Action::RecordForeign)]
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("STALWART_ADOPT_EXISTING"))
    );

    let mut adopt = d.clone();
    adopt.stalwart.adopt_existing = true;
    let p = run(&adopt, &observed(account(false, &[])), &[], &at(0, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::StalwartAccount, Action::Adopt),
            (Resource::StalwartAlias, Action::Create),
        ]
    );
}

#[test]
fn deactivation_suspends_and_reactivation_resumes_only_our_suspension() {
    let p = run(
        &desired(Some(false)),
        &observed(account(false, IN_SYNC)),
        &owned(false),
        &at(0, None),
    );
    assert_eq!(
        actions(&p),
        [(Resource::StalwartSuspension, Action::Create)]
    );
    let p = run(
        &desired(Some(true)),
        &observed(account(true, IN_SYNC)),
        &owned(true),
        &at(0, None),
    );
    assert_eq!(
        actions(&p),
        [(Resource::StalwartSuspension, Action::Delete)]
    );
    // Suspended by someone else: not resumed, said so.
    let p = run(
        &desired(Some(true)),
        &observed(account(true, IN_SYNC)),
        &owned(false),
        &at(0, None),
    );
    assert_eq!(actions(&p), []);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("suspended by someone else"))
    );
}

#[test]
fn a_leaver_is_suspended_then_destroyed_after_the_delay_unless_entitled_again() {
    let gone = desired(None);
    let o = observed(account(false, IN_SYNC));
    let p = run(&gone, &o, &owned(false), &at(1_000, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::StalwartSuspension, Action::Create),
            (
                Resource::StalwartAccount,
                Action::Defer {
                    due_at: 1_000 + HOUR_MS
                }
            ),
        ]
    );
    let suspended = observed(account(true, IN_SYNC));
    let p = run(
        &gone,
        &suspended,
        &owned(true),
        &at(HOUR_MS / 2, Some(HOUR_MS)),
    );
    assert_eq!(actions(&p), [], "waiting");
    let p = run(
        &gone,
        &suspended,
        &owned(true),
        &at(2 * HOUR_MS, Some(HOUR_MS)),
    );
    assert_eq!(actions(&p), [(Resource::StalwartAccount, Action::Delete)]);
    // Re-added before it was due: cancelled and resumed, never destroyed.
    let p = run(
        &desired(Some(true)),
        &suspended,
        &owned(true),
        &at(HOUR_MS / 2, Some(HOUR_MS)),
    );
    assert_eq!(
        actions(&p),
        [
            (Resource::StalwartAccount, Action::Cancel),
            (Resource::StalwartSuspension, Action::Delete),
        ]
    );
    // Without STALWART_DELETE_AFTER: suspended, never destroyed.
    let mut never = gone.clone();
    never.stalwart.delete_after = None;
    let p = run(&never, &suspended, &owned(true), &at(100 * HOUR_MS, None));
    assert_eq!(actions(&p), []);
}

#[test]
fn aliases_a_person_added_stay_and_ours_go_when_dropped() {
    let mut d = desired(Some(true));
    d.stalwart.accounts.get_mut(ALICE).unwrap().aliases.clear();
    let o = observed(account(false, &["a.smith@example.com", "hand@example.com"]));
    let p = run(&d, &o, &owned(false), &at(0, None));
    assert_eq!(actions(&p), [(Resource::StalwartAlias, Action::Delete)]);
    assert_eq!(
        p.steps[0].key,
        keys::stalwart_alias(ALICE, "a.smith@example.com")
    );
}

#[test]
fn lists_follow_the_group_and_a_persons_list_is_left_alone() {
    let mut d = desired(None);
    d.stalwart.lists.insert(
        TEAM.into(),
        StalwartListWant {
            address: TEAM.into(),
            recipients: BTreeSet::from([ALICE.into()]),
            groups: crate::group_set::GroupSet::from(["g1"]),
        },
    );
    let p = run(&d, &observed(None), &[], &at(0, None));
    assert_eq!(actions(&p), [(Resource::StalwartList, Action::Create)]);
    let mut with_list = observed(None);
    with_list.stalwart.as_mut().unwrap().lists.insert(
        TEAM.into(),
        Some(ObservedStalwartList {
            id: "l1".into(),
            recipients: BTreeSet::from(["old@example.com".into()]),
        }),
    );
    let ours = [row(
        Resource::StalwartList,
        keys::stalwart(TEAM),
        LedgerState::Created,
    )];
    let p = run(&d, &with_list, &ours, &at(0, None));
    assert_eq!(actions(&p), [(Resource::StalwartList, Action::Update)]);
    let p = run(&d, &with_list, &[], &at(0, None));
    assert_eq!(
        actions(&p),
        [(Resource::StalwartList, Action::RecordForeign)]
    );
    let p = run(&desired(None), &with_list, &ours, &at(0, None));
    assert_eq!(actions(&p), [(Resource::StalwartList, Action::Delete)]);
}

#[test]
fn nothing_is_suspended_or_destroyed_when_authentik_looks_wrong() {
    let guards = Guards {
        allow_removals: false,
        hold_reason: "user count fell".into(),
        ..Guards::default()
    };
    for (o, clock) in [
        (observed(account(false, IN_SYNC)), at(0, None)),
        (
            observed(account(true, IN_SYNC)),
            at(2 * HOUR_MS, Some(HOUR_MS)),
        ),
    ] {
        let p = plan_at(
            &desired(None),
            &o,
            &owned(false),
            &clock,
            &Scope::All,
            &guards,
        );
        assert!(
            !p.steps.iter().any(|s| matches!(
                (s.resource, s.action),
                (Resource::StalwartSuspension, Action::Create)
                    | (
                        Resource::StalwartAccount,
                        Action::Delete | Action::Defer { .. }
                    )
            )),
            "{:?}",
            actions(&p)
        );
    }
}

#[test]
fn a_resume_and_an_alias_removal_name_the_account_the_ledger_recorded() {
    // Bookkeeping drops a row on a delete only when the ids agree: the
    // suspension and the alias are kept under their account's id.
    let mut ledger = owned(true);
    for r in &mut ledger {
        r.remote_id = "acc1".into();
    }
    let mut d = desired(Some(true));
    d.stalwart.accounts.get_mut(ALICE).unwrap().aliases.clear();
    let p = run(&d, &observed(account(true, IN_SYNC)), &ledger, &at(0, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::StalwartSuspension, Action::Delete),
            (Resource::StalwartAlias, Action::Delete),
        ]
    );
    for s in &p.steps {
        assert_eq!(s.target.remote_id(), "acc1", "{s:?}");
    }
}

#[test]
fn the_suspension_and_aliases_of_a_destroyed_account_are_forgotten() {
    // We destroyed the account (its row went); its suspension and alias
    // rows are left: forgotten, with nothing sent to Stalwart.
    let ledger: Vec<LedgerRow> = owned(true)
        .into_iter()
        .filter(|r| r.resource != Resource::StalwartAccount.as_str())
        .collect();
    let p = run(&desired(None), &observed(None), &ledger, &at(0, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::StalwartSuspension, Action::Forget),
            (Resource::StalwartAlias, Action::Forget),
        ]
    );
    assert_eq!(p.target_writes(), 0);
}

#[test]
fn aliases_we_added_stay_while_the_users_mail_aliases_do_not_parse() {
    let mut d = desired(Some(true));
    let want = d.stalwart.accounts.get_mut(ALICE).unwrap();
    want.aliases.clear();
    want.keep_aliases = true;
    let p = run(
        &d,
        &observed(account(false, IN_SYNC)),
        &owned(false),
        &at(0, None),
    );
    assert_eq!(actions(&p), []);
    // Fixed (to an empty list): ours goes.
    d.stalwart.accounts.get_mut(ALICE).unwrap().keep_aliases = false;
    let p = run(
        &d,
        &observed(account(false, IN_SYNC)),
        &owned(false),
        &at(0, None),
    );
    assert_eq!(actions(&p), [(Resource::StalwartAlias, Action::Delete)]);
}

#[test]
fn a_mass_leave_is_held_by_the_removal_guard_before_any_suspension() {
    // Twenty members of ours left at once (a group's attribute dropped):
    // suspending them all, and starting their destroy clocks, waits for a
    // forced sweep.
    let mut ledger = Vec::new();
    let mut accounts = BTreeMap::new();
    for n in 0..20 {
        let address = format!("user{n}@example.com");
        let mut r = row(
            Resource::StalwartAccount,
            keys::stalwart(&address),
            LedgerState::Created,
        );
        r.username = format!("user{n}");
        r.remote_id = format!("acc{n}");
        ledger.push(r);
        accounts.insert(
            address,
            Some(ObservedStalwartAccount {
                id: format!("acc{n}"),
                suspended: false,
                aliases: BTreeSet::new(),
                quota: None,
            }),
        );
    }
    let o = Observed {
        stalwart: Some(ObservedStalwart {
            domains: BTreeMap::from([("example.com".to_owned(), Some("d1".to_owned()))]),
            accounts,
            lists: BTreeMap::new(),
        }),
        ..Observed::default()
    };
    let p = run(&desired(None), &o, &ledger, &at(0, None));
    assert_eq!(actions(&p), [], "{:?}", p.warnings);
    assert!(
        p.warnings.iter().any(|w| w.contains("exceed the guard")),
        "{:?}",
        p.warnings
    );
    let forced = Guards {
        force: true,
        ..Guards::default()
    };
    let p = plan_at(
        &desired(None),
        &o,
        &ledger,
        &at(0, None),
        &Scope::All,
        &forced,
    );
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.resource == Resource::StalwartSuspension)
            .count(),
        20
    );
}
