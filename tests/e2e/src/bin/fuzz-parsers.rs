//! Property run over everything that parses outside input: the Authentik
//! webhook body, group attributes (mail, Matrix, Stalwart parts), the
//! Authentik listing pages (and what the directory, desired state and
//! listing checks make of them), and Stalwart's webhook batches. Generated
//! JSON leans on the keys these parsers look for, so most cases reach deep
//! paths; raw bytes cover what is not JSON at all. A panic anywhere fails
//! the run (exit 1) and prints the case.
//!
//! cargo build --release -p reconciler-e2e --bin fuzz-parsers
//! target/release/fuzz-parsers [--cases 1000000] [--seed 1]

use std::panic::{AssertUnwindSafe, catch_unwind};

use clap::Parser;
use coordinator::authentik::listing::Listing;
use coordinator::authentik::model::Page;
use coordinator::authentik::{Group, User};
use coordinator::desired::{DesiredConfig, desired_state};
use coordinator::directory::Directory;
use coordinator::webhook::Trigger;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value, json};

#[derive(Parser)]
struct Args {
    /// Cases per target.
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Keys the parsers look for, and some near misses.
const KEYS: &[&str] = &[
    "reconciler",
    "shared_mailbox",
    "access",
    "send_as",
    "sogo_delegate",
    "nextcloud_mail",
    "alias",
    "matrix",
    "rooms",
    "include_children",
    "join",
    "on_leave",
    "grace_period",
    "power_level",
    "stalwart",
    "mailbox",
    "quota",
    "list",
    "mail_aliases",
    "send-as",
    "body",
    "model",
    "app",
    "model_name",
    "pk",
    "name",
    "action",
    "event_pk",
    "user",
    "context",
    "results",
    "pagination",
    "next",
    "previous",
    "count",
    "current",
    "total_pages",
    "start_index",
    "end_index",
    "username",
    "email",
    "is_active",
    "type",
    "groups",
    "users",
    "parents",
    "parent",
    "attributes",
    "uid",
    "events",
    "id",
    "createdAt",
    "data",
    "remoteIp",
    "accountName",
];

/// Strings the parsers treat specially, and hostile ones.
const WORDS: &[&str] = &[
    "",
    "info@example.com",
    "Team@Bücher.example",
    "a@b",
    "@",
    "x@y..z",
    "-a@b.c",
    "a@b.c/../d@e.f",
    "a%2F@b.c",
    "read",
    "readwrite",
    "full",
    "lookup",
    "rede",
    "true",
    "false",
    "force",
    "invite",
    "kick",
    "ban",
    "2h",
    "0",
    "-1",
    "5G",
    "1T",
    "soon",
    "#team:example.com",
    "!abc:example.com",
    "!abc",
    "@alice:example.com",
    "model_updated",
    "model_created",
    "model_deleted",
    "authentik_core",
    "user",
    "group",
    "auth.failed",
    "security.authentication-ban",
    "00000000-0000-0000-0000-000000000001",
    "0000000000000000000000000000000a",
    "internal",
    "service_account",
    "\u{0}",
    "\u{202e}",
    "a\nb",
    "😀",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-5i64..20).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(WORDS).prop_map(|w| json!(w)),
        ".{0,24}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
                        1 => ".{0,12}",
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Runs `check` on `cases` generated values; the first panic ends the run.
fn run<T: std::fmt::Debug>(
    name: &str,
    cases: u64,
    seed: u64,
    strategy: impl Strategy<Value = T>,
    check: impl Fn(&T) -> bool,
) -> bool {
    let mut accepted = 0u64;
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(name.len() as u64).to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let started = std::time::Instant::now();
    for n in 0..cases {
        let case = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(e) => {
                eprintln!("{name}: cannot generate a case: {e}");
                return false;
            }
        };
        match catch_unwind(AssertUnwindSafe(|| check(&case))) {
            Ok(deep) => accepted += u64::from(deep),
            Err(_) => {
                eprintln!("{name}: PANIC on case {n}: {case:?}");
                return false;
            }
        }
    }
    println!(
        "| {name} | {cases} | {accepted} | 0 | {:.1} s |",
        started.elapsed().as_secs_f64()
    );
    true
}

/// An object of 1 to 4 entries whose keys come from `keys`.
fn object_of(
    keys: &'static [&'static str],
    values: impl Strategy<Value = Value> + Clone,
) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(keys), values), 1..5).prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

/// Values of the attribute keys: the words they take, flags, numbers,
/// lists, and now and then anything.
fn attribute_value() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(|w| json!(w)),
        2 => any::<bool>().prop_map(Value::Bool),
        1 => (-5i64..120).prop_map(|n| json!(n)),
        2 => prop::collection::vec(prop::sample::select(WORDS), 0..4).prop_map(|w| json!(w)),
        1 => leaf(),
    ]
}

/// A group's `reconciler` attribute: mostly well-formed keys, with Matrix
/// and Stalwart parts, so most cases get past the key check.
fn attributes() -> impl Strategy<Value = Value> {
    let matrix = object_of(
        &[
            "rooms",
            "include_children",
            "join",
            "on_leave",
            "grace_period",
            "power_level",
        ],
        attribute_value(),
    );
    let stalwart = object_of(&["mailbox", "quota", "list"], attribute_value());
    let part = prop_oneof![
        6 => attribute_value(),
        1 => matrix,
        1 => stalwart,
    ];
    let keys: &'static [&'static str] = &[
        "shared_mailbox",
        "access",
        "send_as",
        "sogo_delegate",
        "nextcloud_mail",
        "alias",
        "matrix",
        "stalwart",
    ];
    // A valid grant with one key changed: most cases then reach the
    // desired state, one field away from what an operator writes.
    let valid = json!({
        "shared_mailbox": "info@example.com", "access": "readwrite", "send_as": true,
        "alias": "team@example.com",
        "matrix": {"rooms": ["#team:example.com"], "grace_period": "2h"},
        "stalwart": {"mailbox": true, "list": "list@example.com"},
    });
    let one_off = (prop::sample::select(keys), part.clone()).prop_map(move |(k, v)| {
        let mut grant = valid.clone();
        grant[k] = v;
        grant
    });
    prop_oneof![
        5 => one_off,
        4 => object_of(keys, part),
        1 => value(),
    ]
}

/// Group ids from a small set, so memberships, parents and cycles meet.
fn group_id() -> impl Strategy<Value = Value> {
    (0u8..8).prop_map(|n| json!(format!("00000000-0000-0000-0000-0000000000{n:02}")))
}

/// A user as Authentik serves it, each field sometimes odd.
fn user() -> impl Strategy<Value = Value> {
    (
        0i64..16,
        prop::sample::select(WORDS),
        prop_oneof![prop::sample::select(WORDS).prop_map(|w| json!(w)), leaf()],
        any::<bool>(),
        prop::sample::select(&["internal", "external", "service_account", "x"][..]),
        prop::collection::vec(group_id(), 0..4),
        value(),
    )
        .prop_map(|(pk, name, email, active, kind, groups, attributes)| {
            json!({"pk": pk, "username": name, "email": email, "is_active": active,
                   "type": kind, "groups": groups, "uid": name,
                   "attributes": {"reconciler": attributes}})
        })
}

/// A group with parents, members and attributes worth parsing.
fn group() -> impl Strategy<Value = Value> {
    (
        group_id(),
        prop::sample::select(WORDS),
        prop::collection::vec(group_id(), 0..3),
        prop::collection::vec(0i64..16, 0..6),
        attributes(),
    )
        .prop_map(|(pk, name, parents, users, attributes)| {
            json!({"pk": pk, "name": name, "parents": parents, "users": users,
                   "attributes": {"reconciler": attributes}})
        })
}

/// Authentik's seven pagination fields for one page of `n`.
fn pagination(n: usize) -> Value {
    json!({"next": 0, "previous": 0, "count": n, "current": 1, "total_pages": 1,
           "start_index": 1, "end_index": n})
}

fn main() {
    let args = Args::parse();
    // Panics are caught and reported per case; their default message
    // would only repeat it.
    std::panic::set_hook(Box::new(|_| {}));
    let (cases, seed) = (args.cases, args.seed);
    // `accepted`: cases the parser took as valid input (the rest it
    // refused with an error), so the deep paths were reached.
    println!("| target | cases | accepted | panics | time |");
    println!("|---|---|---|---|---|");
    let mut ok = true;
    ok &= run("webhook body (JSON)", cases, seed, value(), |v| {
        let reconcile = |r: Result<Trigger, String>| matches!(r, Ok(Trigger::Reconcile { .. }));
        let direct = reconcile(coordinator::webhook::parse(v.to_string().as_bytes()));
        let wrapped = reconcile(coordinator::webhook::parse(
            json!({"body": v.to_string()}).to_string().as_bytes(),
        ));
        direct || wrapped
    });
    ok &= run(
        "webhook body (bytes)",
        cases,
        seed,
        prop::collection::vec(any::<u8>(), 0..256),
        |b| {
            matches!(
                coordinator::webhook::parse(b),
                Ok(Trigger::Reconcile { .. })
            )
        },
    );
    ok &= run("group attributes", cases, seed, attributes(), |v| {
        let _ = coordinator::attributes::parse_group_attributes(v, "reconciler");
        let _ = coordinator::attributes::stalwart::parse_mail_aliases(
            &json!({"reconciler": {"mail_aliases": v}}),
            "reconciler",
        );
        matches!(
            coordinator::attributes::parse_group_attributes(
                &json!({"reconciler": v}),
                "reconciler"
            ),
            Ok(Some(_))
        )
    });
    ok &= run(
        "Authentik pages → directory → desired state",
        cases / 10,
        seed,
        (
            prop::collection::vec(user(), 0..12),
            prop::collection::vec(group(), 0..10),
        ),
        |(users, groups)| {
            let users_page = json!({"pagination": pagination(users.len()), "results": users});
            let groups_page = json!({"pagination": pagination(groups.len()), "results": groups});
            let parsed = (
                serde_json::from_value::<Page<User>>(users_page.clone()),
                serde_json::from_value::<Page<Group>>(groups_page),
            );
            if let (Ok(users), Ok(groups)) = parsed {
                let mut listing = Listing::new("/api/v3/core/users/", "users");
                if let Ok(page) = serde_json::from_value::<Page<User>>(users_page) {
                    let _ = listing.accept(1, page);
                }
                let directory = Directory::new(users.results, groups.results);
                let desired = desired_state(&directory, &DesiredConfig::default());
                return !desired.aliases.is_empty()
                    || !desired.sender_acls.is_empty()
                    || !desired.matrix.grants.is_empty()
                    || !desired.stalwart.lists.is_empty();
            }
            false
        },
    );
    ok &= run(
        "Authentik page (bytes)",
        cases,
        seed,
        prop::collection::vec(any::<u8>(), 0..256),
        |b| {
            let users = serde_json::from_slice::<Page<User>>(b).is_ok();
            users | serde_json::from_slice::<Page<Group>>(b).is_ok()
        },
    );
    ok &= run("Stalwart webhook batch", cases, seed, value(), |v| {
        let _ = coordinator::ingest::stalwart::parse(v.to_string().as_bytes(), "127.0.0.1", 0);
        let batch = coordinator::ingest::stalwart::parse(
            json!({"events": [v, {"id": "1", "type": "auth.failed", "createdAt": v, "data": v}]})
                .to_string()
                .as_bytes(),
            "127.0.0.1",
            0,
        );
        !batch.events.is_empty()
    });
    if !ok {
        std::process::exit(1);
    }
}
