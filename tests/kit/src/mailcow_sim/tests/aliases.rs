//! §4: aliases, with §9 items 3, 4 and 7.

use serde_json::json;

use super::Sim;

#[tokio::test]
async fn add_returns_the_new_id_as_a_string_and_defaults_flags_to_zero() {
    let sim = Sim::seeded().await;
    let answer = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "team@example.com", "goto": "alice@example.com, bob@example.com"}),
        )
        .await;
    let alias = sim.sim.aliases().pop().expect("created");
    assert_eq!(
        answer.msgs(),
        vec![json!([
            "alias_added",
            "team@example.com",
            alias.id.to_string()
        ])]
    );
    // Every flag is intval() of the request: omitted means 0.
    assert!(!alias.active && !alias.sogo_visible && !alias.sender_allowed);
    assert_eq!(alias.goto, vec!["alice@example.com", "bob@example.com"]);
    // The envelope is plain json_encode: slashes escaped, log echoed.
    let raw: serde_json::Value = answer.json();
    assert_eq!(raw[0]["log"][0], "mailbox");
    assert_eq!(raw[0]["log"][2], "alias");
    assert_eq!(raw[0]["log"][4], serde_json::Value::Null);
}

#[tokio::test]
async fn mailbox_addresses_are_taken_by_their_hidden_self_alias() {
    let sim = Sim::seeded().await;
    let answer = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "info@example.com", "goto": "alice@example.com", "active": 1}),
        )
        .await;
    assert_eq!(answer.types(), vec!["danger"]);
    assert_eq!(
        answer.msgs(),
        vec![json!(["is_alias_or_mailbox", "info@example.com"])]
    );
    // Self-aliases never show in listings or lookups.
    assert_eq!(sim.get("/api/v1/get/alias/all").await.body, "{}");
    assert_eq!(
        sim.get("/api/v1/get/alias/info@example.com").await.body,
        "{}"
    );
}

#[tokio::test]
async fn add_validation_quirks() {
    let sim = Sim::seeded().await;
    // A JSON array goto is a TypeError in preg_split: empty 200.
    let array = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "a@example.com", "goto": ["alice@example.com"]}),
        )
        .await;
    assert_eq!((array.status, array.body.as_str()), (200, ""));
    // A goto without `@` normalises to "@" (false . '@' . false).
    let no_at = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "a@example.com", "goto": "alice"}),
        )
        .await;
    assert_eq!(no_at.msgs(), vec![json!(["goto_invalid", "@"])]);

    let long = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "a@example.com", "goto": "alice@example.com", "private_comment": "x".repeat(161)}),
        )
        .await;
    assert_eq!(long.msgs(), vec![json!("comment_too_long")]);

    let partly = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "b@example.com", "goto": "alice@example.com,null@localhost", "active": 1}),
        )
        .await;
    assert_eq!(partly.types(), vec!["danger", "success"]);
    assert_eq!(partly.msgs()[0], json!(["goto_invalid", "null@localhost"]));
    let unknown_domain = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "c@nowhere.test", "goto": "alice@example.com"}),
        )
        .await;
    assert_eq!(
        unknown_domain.msgs(),
        vec![json!(["domain_not_found", "nowhere.test"])]
    );
    let empty = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "d@example.com", "goto": ""}),
        )
        .await;
    assert_eq!(empty.msgs(), vec![json!("goto_empty")]);

    // An address that is its own goto is skipped without a word.
    let own = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "e@example.com", "goto": "e@example.com"}),
        )
        .await;
    assert_eq!(own.body, r#"{"type":"success","msg":"Task completed"}"#);
    let names: Vec<_> = sim.sim.aliases().into_iter().map(|a| a.address).collect();
    assert_eq!(names, vec!["b@example.com"]);
}

#[tokio::test]
async fn an_address_listed_last_in_its_own_goto_is_not_skipped() {
    let sim = Sim::seeded().await;
    // PHP's by-reference foreach leaves the last goto element aliased, and
    // `$goto = implode(...)` overwrites it before the skip check runs.
    let first = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "loop@example.com", "goto": "loop@example.com,alice@example.com"}),
        )
        .await;
    assert_eq!(first.body, r#"{"type":"success","msg":"Task completed"}"#);
    let last = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "loop@example.com", "goto": "alice@example.com,loop@example.com"}),
        )
        .await;
    assert_eq!(last.types(), vec!["success"]);
    let alias = sim.sim.aliases().pop().expect("created");
    assert_eq!(alias.goto, vec!["alice@example.com", "loop@example.com"]);
}

#[tokio::test]
async fn details_have_the_reference_fields() {
    let sim = Sim::seeded().await;
    let id = sim.sim.add_alias(
        "team@example.com",
        &["alice@example.com", "bob@example.com"],
        true,
        "hand-made",
    );
    let by_id = sim.get(&format!("/api/v1/get/alias/{id}")).await.json();
    let by_address = sim.get("/api/v1/get/alias/TEAM@example.com").await.json();
    assert_eq!(by_id, by_address, "by id or (case-insensitive) address");
    let keys: Vec<_> = by_id.as_object().expect("object").keys().cloned().collect();
    let mut expected = vec![
        "in_primary_domain",
        "id",
        "domain",
        "public_comment",
        "private_comment",
        "goto",
        "address",
        "is_catch_all",
        "internal",
        "active",
        "active_int",
        "sogo_visible",
        "sogo_visible_int",
        "sender_allowed",
        "created",
        "modified",
    ];
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    expected.sort();
    assert_eq!(keys_sorted, expected);
    assert_eq!(by_id["goto"], "alice@example.com,bob@example.com");
    assert_eq!(by_id["id"], id, "ints are JSON numbers");
    assert_eq!(by_id["active"], 1);
    let all = sim.get("/api/v1/get/alias/all").await.json();
    assert_eq!(all.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn edit_by_id_or_address_replaces_goto_and_keeps_omitted_flags() {
    let sim = Sim::seeded().await;
    let id = sim
        .sim
        .add_alias("team@example.com", &["alice@example.com"], true, "keep me");
    let by_address = sim
        .post_json(
            "/api/v1/edit/alias",
            json!({"items": ["team@example.com"], "attr": {"goto": "bob@example.com,info@example.com"}}),
        )
        .await;
    assert_eq!(
        by_address.msgs(),
        vec![json!(["alias_modified", "team@example.com"])]
    );
    let alias = sim.sim.aliases().pop().expect("alias");
    assert_eq!(alias.goto, vec!["bob@example.com", "info@example.com"]);
    assert!(alias.active && alias.sogo_visible && alias.sender_allowed);
    assert_eq!(alias.private_comment, "keep me");

    let by_id = sim
        .post_json(
            "/api/v1/edit/alias",
            json!({"items": [id], "attr": {"active": 0}}),
        )
        .await;
    assert_eq!(by_id.types(), vec!["success"]);
    assert!(!sim.sim.aliases()[0].active);

    let unknown = sim
        .post_json(
            "/api/v1/edit/alias",
            json!({"items": [999, id], "attr": {}}),
        )
        .await;
    assert_eq!(
        unknown.msgs(),
        vec![
            json!(["alias_invalid", null]),
            json!(["alias_modified", "team@example.com"])
        ]
    );
    let nothing = sim
        .post_json("/api/v1/edit/alias", json!({"items": [], "attr": {}}))
        .await;
    assert_eq!(nothing.body, r#"{"type":"success","msg":"Task completed"}"#);
}

#[tokio::test]
async fn editing_a_null_alias_without_its_flag_succeeds_but_changes_nothing() {
    let sim = Sim::seeded().await;
    sim.post_json(
        "/api/v1/add/alias",
        json!({"address": "void@example.com", "goto_null": 1, "active": 1}),
    )
    .await;
    let answer = sim
        .post_json(
            "/api/v1/edit/alias",
            json!({"items": ["void@example.com"], "attr": {"active": 0}}),
        )
        .await;
    assert_eq!(
        answer.msgs(),
        vec![
            json!(["goto_invalid", "null@localhost"]),
            json!(["alias_modified", "void@example.com"])
        ]
    );
    let alias = sim.sim.aliases().pop().expect("alias");
    assert!(alias.active, "the UPDATE was skipped");
    assert_eq!(alias.goto, vec!["null@localhost"]);
}

#[tokio::test]
async fn edit_and_delete_clean_up_send_as_rows() {
    let sim = Sim::seeded().await;
    let id = sim
        .sim
        .add_alias("team@example.com", &["alice@example.com"], false, "");
    sim.sim
        .add_sender_acl_row("alice@example.com", "team@example.com", false);
    sim.sim
        .add_sender_acl_row("bob@example.com", "team@example.com", false);
    sim.post_json(
        "/api/v1/edit/alias",
        json!({"items": [id], "attr": {"goto": "alice@example.com"}}),
    )
    .await;
    assert!(
        sim.sim.sender_acl("alice@example.com").is_empty(),
        "goto's row removed"
    );
    assert_eq!(
        sim.sim.sender_acl("bob@example.com"),
        vec!["team@example.com"]
    );

    let delete = sim
        .post_json(
            "/api/v1/delete/alias",
            json!(["nobody@example.com", "team@example.com"]),
        )
        .await;
    assert_eq!(
        delete.msgs(),
        vec![
            json!("access_denied"),
            json!(["alias_removed", "team@example.com"])
        ]
    );
    assert!(sim.sim.aliases().is_empty());
    assert!(sim.sim.sender_acl("bob@example.com").is_empty());
}

#[tokio::test]
async fn delete_by_id_and_the_wrong_body_shape() {
    let sim = Sim::seeded().await;
    let id = sim
        .sim
        .add_alias("team@example.com", &["alice@example.com"], true, "");
    // {"items": [...]} is one item, the array itself: not found.
    let wrapped = sim
        .post_json("/api/v1/delete/alias", json!({"items": [id]}))
        .await;
    assert_eq!(wrapped.msgs(), vec![json!("access_denied")]);
    let bare = sim.post_json("/api/v1/delete/alias", json!([id])).await;
    assert_eq!(
        bare.msgs(),
        vec![json!(["alias_removed", "team@example.com"])]
    );
}

#[tokio::test]
async fn domain_details_count_aliases_but_not_the_mailboxes_self_aliases() {
    let sim = Sim::seeded().await;
    let in_domain = |body: serde_json::Value| body["aliases_in_domain"].as_i64().expect("a count");
    let before = in_domain(sim.get("/api/v1/get/domain/example.com").await.json());
    assert_eq!(before, 0, "the seeded mailboxes' self-aliases do not count");
    for address in ["team@example.com", "Sales@Example.com"] {
        let answer = sim
            .post_json(
                "/api/v1/add/alias",
                json!({"address": address, "goto": "alice@example.com", "active": 1}),
            )
            .await;
        assert_eq!(answer.types(), vec!["success"]);
    }
    let details: serde_json::Value = sim.get("/api/v1/get/domain/example.com").await.json();
    assert_eq!(in_domain(details.clone()), 2);
    assert_eq!(
        details["aliases_left"].as_i64(),
        Some(details["max_num_aliases_for_domain"].as_i64().unwrap() - 2)
    );
}

/// The count `add/alias` checks against the domain's limit, and the
/// address lookup, follow every kind of row change, alias domains included
/// (the simulator keeps both as rows change instead of scanning every
/// alias on each add).
#[tokio::test]
async fn the_domain_alias_count_follows_adds_edits_deletes_and_alias_domains() {
    let sim = &Sim::seeded().await;
    sim.sim.add_alias_domain("alias.example.net", "example.com");
    sim.sim.add_domain("example.org");
    let count = |domain: &'static str| async move {
        let details: serde_json::Value = sim
            .get(&format!("/api/v1/get/domain/{domain}"))
            .await
            .json();
        details["aliases_in_domain"].as_i64().expect("a count")
    };
    let add = |address: &'static str| async move {
        sim.post_json(
            "/api/v1/add/alias",
            json!({"address": address, "goto": "alice@example.com", "active": 1}),
        )
        .await
        .types()
    };
    assert_eq!(add("team@example.com").await, vec!["success"]);
    assert_eq!(add("ops@alias.example.net").await, vec!["success"]);
    assert_eq!(
        count("example.com").await,
        2,
        "an alias domain's aliases count for its target"
    );
    assert_eq!(count("example.org").await, 0);

    // An address moved to another domain counts there, and its old address
    // is free again.
    let moved = sim
        .post_json(
            "/api/v1/edit/alias",
            json!({"items": ["team@example.com"], "attr": {"address": "crew@example.org"}}),
        )
        .await;
    assert_eq!(moved.types(), vec!["success"]);
    assert!(
        sim.sim
            .aliases()
            .iter()
            .any(|a| a.address == "crew@example.org")
    );
    assert_eq!(
        (count("example.com").await, count("example.org").await),
        (1, 1)
    );
    assert_eq!(add("team@example.com").await, vec!["success"]);
    assert_eq!(count("example.com").await, 2);

    // Editing a mailbox rewrites its self-alias: it still does not count,
    // and it still holds the mailbox's address.
    let edited = sim
        .post_json(
            "/api/v1/edit/mailbox",
            json!({"items": ["bob@example.com"], "attr": {"active": 0}}),
        )
        .await;
    assert_eq!(edited.types(), vec!["success"]);
    assert_eq!(count("example.com").await, 2);
    assert_eq!(add("bob@example.com").await, vec!["danger"]);

    let ops = sim
        .sim
        .aliases()
        .into_iter()
        .find(|a| a.address == "ops@alias.example.net")
        .expect("ops");
    let deleted = sim.post_json("/api/v1/delete/alias", json!([ops.id])).await;
    assert_eq!(deleted.types(), vec!["success"]);
    assert_eq!(count("example.com").await, 1);

    // The freed address can be taken again; a taken one cannot, in any case.
    assert_eq!(add("ops@alias.example.net").await, vec!["success"]);
    assert_eq!(add("CREW@example.org").await, vec!["danger"]);
    assert_eq!(
        (count("example.com").await, count("example.org").await),
        (2, 1)
    );
}
