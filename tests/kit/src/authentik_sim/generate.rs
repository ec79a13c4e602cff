//! A seeded, reproducible directory for benchmarks: users, a nested group
//! DAG, and group attributes that grant shared mailboxes and aliases.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::AuthentikSim;
use super::model::display_name;

/// What [`generate_directory`] created, so the caller can seed Mailcow.
#[derive(Clone, Debug, Default)]
pub struct GeneratedDirectory {
    /// `user{i}@example.com`, one per user (all active, type internal).
    pub user_emails: Vec<String>,
    pub user_pks: Vec<i64>,
    /// Dashed UUIDs, in creation order (`group{j}`).
    pub group_uuids: Vec<String>,
    /// `shared{j}@example.com`, one per granting group.
    pub shared_mailboxes: Vec<String>,
    /// `team{k}@example.com`, the aliases some groups declare.
    pub aliases: Vec<String>,
    /// Every mail domain used above.
    pub domains: Vec<String>,
    /// Direct memberships created.
    pub memberships: usize,
}

const DOMAIN: &str = "example.com";

/// Creates `users` users and `groups` groups in `sim`:
///
/// - group `j` is a root or the child of an earlier group, occasionally of
///   two (a DAG, no cycles), so chains are at most `max_depth` groups long;
/// - every group has 2–12 direct members;
/// - `shared_mailboxes` groups (at most one mailbox per group) carry
///   `{"reconciler": {"shared_mailbox": "shared{j}@example.com", "access":
///   "readwrite", "send_as": true, "nextcloud_mail": true}}`;
/// - about one group in twenty also (or only) declares
///   `"alias": "team{k}@example.com"` under `reconciler`.
///
/// The same arguments always produce the same names, memberships and
/// attributes (UUIDs and pks aside).
pub fn generate_directory(
    sim: &AuthentikSim,
    users: usize,
    groups: usize,
    shared_mailboxes: usize,
    max_depth: usize,
    seed: u64,
) -> GeneratedDirectory {
    build(
        sim,
        users,
        groups,
        max_depth,
        seed,
        Grants::Mixed { shared_mailboxes },
    )
}

/// The same users and group DAG as [`generate_directory`], but every group
/// declares only `{"reconciler": {"alias": "team{j}@example.com"}}`: one
/// alias per group, whose goto is the group's members (the alias job).
pub fn generate_alias_directory(
    sim: &AuthentikSim,
    users: usize,
    groups: usize,
    max_depth: usize,
    seed: u64,
) -> GeneratedDirectory {
    build(sim, users, groups, max_depth, seed, Grants::AliasOnly)
}

/// What the generated groups declare.
#[derive(Clone, Copy)]
enum Grants {
    /// Shared mailboxes on some groups, an alias on about one in twenty.
    Mixed { shared_mailboxes: usize },
    /// An alias on every group, nothing else.
    AliasOnly,
}

fn build(
    sim: &AuthentikSim,
    users: usize,
    groups: usize,
    max_depth: usize,
    seed: u64,
    grants: Grants,
) -> GeneratedDirectory {
    let mut rng = StdRng::seed_from_u64(seed);
    let max_depth = max_depth.max(1);
    let mut out = GeneratedDirectory {
        domains: vec![DOMAIN.to_owned()],
        ..GeneratedDirectory::default()
    };
    // One lock for the whole build: 10k separate mutator calls would be as
    // correct, just slower.
    let mut directory = sim.shared.directory();

    for i in 0..users {
        let username = format!("user{i}");
        let email = format!("{username}@{DOMAIN}");
        let pk = directory.create_user(&username, &display_name(&username), &email);
        out.user_emails.push(email);
        out.user_pks.push(pk);
    }

    // Which groups grant a mailbox: a seeded shuffle, so they are spread over
    // roots and nested groups alike.
    let mut mailbox_of: Vec<Option<usize>> = vec![None; groups];
    if let Grants::Mixed { shared_mailboxes } = grants {
        let mut order: Vec<usize> = (0..groups).collect();
        order.shuffle(&mut rng);
        for (j, &group) in order.iter().take(shared_mailboxes).enumerate() {
            mailbox_of[group] = Some(j);
        }
    }

    let mut levels: Vec<usize> = Vec::with_capacity(groups);
    let mut uuids: Vec<Uuid> = Vec::with_capacity(groups);
    for (j, mailbox) in mailbox_of.iter().enumerate() {
        let mut grant = Map::new();
        if let Some(m) = mailbox {
            let address = format!("shared{m}@{DOMAIN}");
            grant.insert("shared_mailbox".into(), json!(address));
            grant.insert("access".into(), json!("readwrite"));
            grant.insert("send_as".into(), json!(true));
            grant.insert("nextcloud_mail".into(), json!(true));
            out.shared_mailboxes.push(address);
        }
        let declares_alias = match grants {
            Grants::Mixed { .. } => rng.random_ratio(1, 20),
            Grants::AliasOnly => true,
        };
        if declares_alias {
            let alias = format!("team{}@{DOMAIN}", out.aliases.len());
            grant.insert("alias".into(), json!(alias));
            out.aliases.push(alias);
        }
        let attributes = if grant.is_empty() {
            json!({})
        } else {
            json!({ "reconciler": Value::Object(grant) })
        };
        let uuid = directory.create_group(&format!("group{j}"), attributes);

        // Parents come only from earlier groups that can still take a child.
        let eligible: Vec<usize> = (0..j).filter(|&p| levels[p] < max_depth).collect();
        let mut parents: Vec<usize> = Vec::new();
        if !eligible.is_empty() && !rng.random_ratio(3, 10) {
            parents.push(eligible[rng.random_range(0..eligible.len())]);
            if rng.random_ratio(1, 10) {
                let second = eligible[rng.random_range(0..eligible.len())];
                if !parents.contains(&second) {
                    parents.push(second);
                }
            }
        }
        let level = parents.iter().map(|&p| levels[p]).max().unwrap_or(0) + 1;
        levels.push(level);

        let size = if users == 0 {
            0
        } else {
            rng.random_range(2..=12).min(users)
        };
        let group = directory.groups.get_mut(&uuid).expect("just created");
        group.parents = parents.iter().map(|&p| uuids[p]).collect();
        while group.users.len() < size {
            group.users.insert(out.user_pks[rng.random_range(0..users)]);
        }
        out.memberships += group.users.len();
        uuids.push(uuid);
        out.group_uuids.push(uuid.to_string());
    }
    out
}
