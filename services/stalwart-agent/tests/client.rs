//! The JMAP client against the Stalwart simulator (in process): each call's
//! effect on the simulator's state, error classes, and request counts.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use reconciler_runtime::secrets::Secret;
use reconciler_testkit::stalwart_sim::{Fault, ObjectType, SignIn, StalwartSim, StalwartSimConfig};
use serde_json::json;
use stalwart_agent::config::ClientConfig;
use stalwart_agent::error::ErrorClass;
use stalwart_agent::jmap::{
    AccountFilter, AccountKind, AccountPatch, Alias, ListRecipients, NewAccount, NewDomain,
    NewList, StalwartApi, StalwartClient,
};

async fn start(config: StalwartSimConfig) -> StalwartSim {
    StalwartSim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client_with_key(sim: &StalwartSim, key: &str) -> StalwartClient {
    StalwartClient::new(ClientConfig::new(&sim.base_url(), Secret::new(key)).unwrap()).unwrap()
}

fn client(sim: &StalwartSim) -> StalwartClient {
    client_with_key(sim, sim.api_key())
}

fn user(key: &str, name: &str, domain_id: &str) -> NewAccount {
    NewAccount {
        key: key.into(),
        kind: AccountKind::User,
        name: name.into(),
        domain_id: domain_id.into(),
        aliases: Vec::new(),
        disk_quota: None,
        description: None,
    }
}

#[tokio::test]
async fn session_discovery_finds_the_api_url_and_account() {
    let sim = start(StalwartSimConfig {
        // apiUrl names a public host the agent cannot reach: its path is kept.
        public_url: Some("https://mail.example.com".into()),
        ..Default::default()
    })
    .await;
    let session = client(&sim).session().await.unwrap();
    assert_eq!(session.api_url, format!("{}/jmap/", sim.base_url()));
    assert!(!session.account_id.is_empty());
    assert_eq!(session.username, "admin");
}

#[tokio::test]
async fn a_server_before_0_16_is_a_configuration_error() {
    let sim = start(StalwartSimConfig {
        management: false,
        ..Default::default()
    })
    .await;
    let e = client(&sim).session().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Config, "{e}");
    assert!(e.to_string().contains("0.16"), "{e}");
    let e = client(&sim).domains().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Config, "{e}");
}

#[tokio::test]
async fn a_refused_key_is_a_configuration_error() {
    let sim = start(StalwartSimConfig::default()).await;
    let e = client_with_key(&sim, "wrong").session().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Config, "{e}");
    assert!(!e.to_string().contains("wrong"), "the key never shows: {e}");

    // 401 on an API call after a good session.
    let c = client(&sim);
    c.session().await.unwrap();
    sim.fail_next(1, Fault::Unauthorized);
    let e = c.domains().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Config, "{e}");
}

#[tokio::test]
async fn stalwart_down_or_failing_is_transient_and_recovers() {
    let sim = start(StalwartSimConfig::default()).await;
    let c = client(&sim);
    c.session().await.unwrap();
    sim.go_down().await;
    let e = c.domains().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Transient, "{e}");
    sim.come_up().await.unwrap();
    assert!(c.domains().await.unwrap().is_empty());

    sim.fail_next(1, Fault::Http500);
    assert_eq!(
        c.domains().await.unwrap_err().class(),
        ErrorClass::Transient
    );
    sim.fail_next(1, Fault::Down);
    assert_eq!(
        c.domains().await.unwrap_err().class(),
        ErrorClass::Transient
    );
    assert!(c.domains().await.is_ok());
}

#[tokio::test]
async fn domains_are_created_listed_and_a_domain_in_use_is_not_destroyed_by_stalwart() {
    let sim = start(StalwartSimConfig::default()).await;
    let c = client(&sim);
    let created = c
        .create_domains(&[
            NewDomain {
                key: "d1".into(),
                name: "Example.com".into(),
            },
            NewDomain {
                key: "d2".into(),
                name: "no-tld".into(),
            },
        ])
        .await
        .unwrap();
    let id = created[0].result.clone().unwrap();
    assert_eq!(created[1].result.as_ref().unwrap_err().kind, "invalidPatch");
    assert_eq!(sim.state()["domains"][0]["name"], "example.com");
    assert_eq!(
        sim.state()["domains"][0]["dkimManagement"]["@type"],
        "Automatic"
    );
    assert_eq!(
        c.query_domains(Some("example.com")).await.unwrap(),
        std::slice::from_ref(&id)
    );
    let domains = c.domains().await.unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].name, "example.com");

    // The same name again: a per-item SetError with its type.
    let again = c
        .create_domains(&[NewDomain {
            key: "d3".into(),
            name: "example.com".into(),
        }])
        .await
        .unwrap();
    assert_eq!(
        again[0].result.as_ref().unwrap_err().kind,
        "primaryKeyViolation"
    );

    // The agent never destroys domains; Stalwart itself refuses while in use.
    sim.add_user("someone@example.com", None);
    let answer = raw_destroy_domain(&sim, &id).await;
    assert_eq!(answer["notDestroyed"][&id]["type"], "objectIsLinked");
    assert_eq!(sim.state()["domains"].as_array().unwrap().len(), 1);
}

/// The client has no domain destroy (domains are never destroyed by us):
/// this shows Stalwart's refusal with a plain request.
async fn raw_destroy_domain(sim: &StalwartSim, id: &str) -> serde_json::Value {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/jmap/", sim.base_url()))
        .bearer_auth(sim.api_key())
        .json(
            &json!({"using": ["urn:ietf:params:jmap:core", "urn:stalwart:jmap"],
                      "methodCalls": [["x:Domain/set", {"destroy": [id]}, "c0"]]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["methodResponses"][0][1].clone()
}

#[tokio::test]
async fn accounts_created_updated_suspended_resumed_and_destroyed() {
    let sim = start(StalwartSimConfig::default()).await;
    let domain = sim.add_domain("example.com");
    let c = client(&sim);
    let mut alice = user("alice", "alice", &domain);
    alice.aliases = vec![Alias::new("a.smith", &domain)];
    alice.disk_quota = Some(5 << 30);
    let created = c.create_accounts(&[alice.clone()]).await.unwrap();
    let id = created[0].result.clone().unwrap();

    let in_sim = sim.find(ObjectType::Account, "alice@example.com").unwrap();
    assert_eq!(in_sim["id"], id.as_str());
    assert_eq!(in_sim["aliases"]["0"]["name"], "a.smith");
    assert_eq!(in_sim["quotas"]["maxDiskQuota"], 5u64 << 30);
    assert_eq!(in_sim["credentials"], json!({}), "no password");
    // An OIDC sign-in works; no password sign-in can.
    assert_eq!(sim.sign_in("alice@example.com", None), SignIn::Allowed);

    // A second identical create: its SetError type comes back.
    let again = c.create_accounts(&[alice]).await.unwrap();
    let failure = again[0].result.as_ref().unwrap_err();
    assert_eq!(failure.kind, "primaryKeyViolation");
    assert_eq!(failure.properties, ["email"]);

    // Look-up by name and domain (there is no address filter).
    let filter = AccountFilter {
        name: Some("alice".into()),
        domain_id: Some(domain.clone()),
        ..Default::default()
    };
    let found = c.accounts(&filter).await.unwrap();
    assert_eq!(found.len(), 1);
    let account = &found[0];
    assert_eq!(account.email_address.as_deref(), Some("alice@example.com"));
    assert!(!account.is_suspended());

    // Suspend: sign-in refused, mail and aliases kept.
    let r = c
        .update_accounts(&[AccountPatch::new(&id).suspend(account)])
        .await
        .unwrap();
    assert!(r[0].result.is_ok(), "{r:?}");
    assert_eq!(sim.sign_in("alice@example.com", None), SignIn::Forbidden);
    let suspended = c.get_accounts(std::slice::from_ref(&id)).await.unwrap();
    assert!(suspended[0].is_suspended());
    assert_eq!(suspended[0].aliases.len(), 1);

    // Resume: as it was.
    c.update_accounts(&[AccountPatch::new(&id).resume(&suspended[0])])
        .await
        .unwrap();
    assert_eq!(sim.sign_in("alice@example.com", None), SignIn::Allowed);
    assert_eq!(
        sim.get(ObjectType::Account, &id).unwrap()["permissions"],
        json!({"@type": "Inherit"})
    );

    // A person's own permission entries survive suspend and resume.
    sim.update(
        ObjectType::Account,
        &id,
        json!({"permissions": {"@type": "Merge", "enabledPermissions": {"emailSend": true},
                               "disabledPermissions": {}}}),
    )
    .unwrap();
    let current = &c.get_accounts(std::slice::from_ref(&id)).await.unwrap()[0];
    c.update_accounts(&[AccountPatch::new(&id).suspend(current)])
        .await
        .unwrap();
    assert_eq!(sim.sign_in("alice@example.com", None), SignIn::Forbidden);
    let current = &c.get_accounts(std::slice::from_ref(&id)).await.unwrap()[0];
    c.update_accounts(&[AccountPatch::new(&id).resume(current)])
        .await
        .unwrap();
    assert_eq!(sim.sign_in("alice@example.com", None), SignIn::Allowed);
    assert_eq!(
        sim.get(ObjectType::Account, &id).unwrap()["permissions"]["enabledPermissions"],
        json!({"emailSend": true})
    );

    // Aliases and quota replaced.
    let r = c
        .update_accounts(&[AccountPatch::new(&id)
            .aliases(&[Alias::new("alice.s", &domain), Alias::new("as", &domain)])
            .disk_quota(None)])
        .await
        .unwrap();
    assert!(r[0].result.is_ok(), "{r:?}");
    let in_sim = sim.get(ObjectType::Account, &id).unwrap();
    assert_eq!(in_sim["aliases"]["1"]["name"], "as");
    assert_eq!(in_sim["quotas"], json!({}));

    // Per-item failures: unknown id.
    let r = c
        .update_accounts(&[AccountPatch::new("zzzz").description(Some("x"))])
        .await
        .unwrap();
    assert_eq!(r[0].result.as_ref().unwrap_err().kind, "notFound");

    // Destroy, then it is gone; destroying again is notFound.
    let r = c.destroy_accounts(std::slice::from_ref(&id)).await.unwrap();
    assert!(r[0].result.is_ok());
    assert!(sim.find(ObjectType::Account, "alice@example.com").is_none());
    let r = c.destroy_accounts(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(r[0].result.as_ref().unwrap_err().kind, "notFound");
}

#[tokio::test]
async fn a_server_that_demands_a_password_gets_a_random_one_never_returned() {
    let sim = start(StalwartSimConfig::default()).await;
    let domain = sim.add_domain("example.com");
    sim.set_require_password(true);
    let c = client(&sim);
    let r = c
        .create_accounts(&[user("bob", "bob", &domain)])
        .await
        .unwrap();
    let id = r[0].result.clone().unwrap();
    assert_eq!(
        sim.count("x:Account/set"),
        2,
        "refused, then created with a password"
    );
    let account = sim.get(ObjectType::Account, &id).unwrap();
    assert_eq!(account["credentials"]["0"]["secret"], "****");
    // The caller gets an id, nothing else: no password leaves the client.
    assert_eq!(format!("{r:?}").matches(&id).count(), 1);
}

#[tokio::test]
async fn mailing_lists_follow_their_recipients() {
    let sim = start(StalwartSimConfig::default()).await;
    let domain = sim.add_domain("example.com");
    let c = client(&sim);
    let r = c
        .create_lists(&[NewList {
            key: "team".into(),
            name: "team".into(),
            domain_id: domain.clone(),
            recipients: vec!["alice@example.com".into(), "bob@example.com".into()],
            description: Some("Team".into()),
        }])
        .await
        .unwrap();
    let id = r[0].result.clone().unwrap();
    assert_eq!(
        sim.find(ObjectType::MailingList, "team@example.com")
            .unwrap()["recipients"],
        json!({"alice@example.com": true, "bob@example.com": true})
    );
    let r = c
        .update_list_recipients(&[ListRecipients {
            id: id.clone(),
            recipients: vec!["carol@example.com".into()],
        }])
        .await
        .unwrap();
    assert!(r[0].result.is_ok());
    let lists = c.lists().await.unwrap();
    assert_eq!(lists[0].recipients, ["carol@example.com"]);
    assert_eq!(c.query_lists().await.unwrap(), std::slice::from_ref(&id));
    assert_eq!(
        c.get_lists(std::slice::from_ref(&id)).await.unwrap()[0].name,
        "team"
    );
    c.destroy_lists(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(sim.state()["mailingLists"], json!([]));
}

#[tokio::test]
async fn a_sync_of_many_accounts_costs_few_requests() {
    let sim = start(StalwartSimConfig::default()).await;
    let domain = sim.add_domain("example.com");
    let group = sim.add_group("staff@example.com");
    let c = client(&sim);
    c.session().await.unwrap();
    sim.reset_counts();

    let n = 1200;
    let new: Vec<NewAccount> = (0..n)
        .map(|i| user(&format!("u{i}"), &format!("user{i}"), &domain))
        .collect();
    let r = c.create_accounts(&new).await.unwrap();
    assert!(r.iter().all(|r| r.result.is_ok()));
    // 1200 creates: three /set calls of at most 500, in one request.
    assert_eq!(sim.count("POST /jmap"), 1);
    assert_eq!(sim.count("x:Account/set"), 3);

    sim.reset_counts();
    let all = c
        .accounts(&AccountFilter {
            kind: Some(AccountKind::User),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), n);
    // Pages of 500: the first query+get, then the other two pages together.
    assert_eq!(sim.count("POST /jmap"), 2);
    assert_eq!(sim.count("x:Account/get"), 3);

    sim.reset_counts();
    let patches: Vec<AccountPatch> = all
        .iter()
        .map(|a| AccountPatch::new(&a.id).suspend(a))
        .collect();
    let r = c.update_accounts(&patches).await.unwrap();
    assert!(r.iter().all(|r| r.result.is_ok()));
    assert_eq!(sim.count("POST /jmap"), 1);
    assert_eq!(sim.sign_in("user7@example.com", None), SignIn::Forbidden);

    let groups = c
        .query_accounts(&AccountFilter {
            kind: Some(AccountKind::Group),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(groups, [group]);
}

#[tokio::test]
async fn a_few_accounts_are_found_by_name_in_one_request() {
    let sim = start(StalwartSimConfig::default()).await;
    let domain = sim.add_domain("example.com");
    let other = sim.add_domain("example.org");
    let alice = sim.add_user("alice@example.com", None);
    let bob = sim.add_user("bob@example.org", None);
    let staff = sim.add_group("staff@example.com");
    let c = client(&sim);
    c.session().await.unwrap();
    sim.reset_counts();
    let names: Vec<(String, String)> = [
        ("alice", &domain),
        ("bob", &domain), // bob is in the other domain
        ("bob", &other),
        ("staff", &domain),
        ("nobody", &domain),
    ]
    .iter()
    .map(|(n, d)| ((*n).to_owned(), (*d).clone()))
    .collect();
    let found = c.accounts_named(&names).await.unwrap();
    let mut ids: Vec<String> = found.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    let mut expected = vec![alice, bob, staff];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(sim.count("POST /jmap"), 1, "{:?}", sim.counts());
    assert_eq!(sim.count("x:Account/query"), 5);

    // Eight names per request.
    sim.reset_counts();
    let many: Vec<(String, String)> = (0..20)
        .map(|i| (format!("user{i}"), domain.clone()))
        .collect();
    assert!(c.accounts_named(&many).await.unwrap().is_empty());
    assert_eq!(sim.count("POST /jmap"), 3, "{:?}", sim.counts());
}

/// The binary refuses to start on a configuration error it can see
/// without Stalwart (no `AGENT_TOKEN`, a URL that is not one), exiting
/// non-zero with the reason and without the key. A Stalwart that is down,
/// refuses the key or predates 0.16 does not stop it: the running agent
/// reports that (tests/e2e/suite/stalwart_agent.rs).
#[tokio::test]
async fn the_binary_exits_non_zero_on_a_configuration_error() {
    let sim = start(StalwartSimConfig::default()).await;
    let run = |url: String, token: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_stalwart-agent"));
        command
            .env_clear()
            .env("STALWART_URL", url)
            .env("STALWART_API_KEY", sim.api_key())
            .env("AGENT_LISTEN", "127.0.0.1:0");
        if let Some(token) = token {
            command.env("AGENT_TOKEN", token);
        }
        command.output()
    };
    let no_token = run(sim.base_url(), None).await.unwrap();
    assert!(!no_token.status.success());
    let stderr = String::from_utf8_lossy(&no_token.stderr);
    assert!(stderr.contains("AGENT_TOKEN"), "{stderr}");
    assert!(!stderr.contains(sim.api_key()), "the key never shows");
    let bad_url = run("stalwart:8080".into(), Some("token")).await.unwrap();
    assert!(!bad_url.status.success());
    let stderr = String::from_utf8_lossy(&bad_url.stderr);
    assert!(stderr.contains("STALWART_URL"), "{stderr}");
    assert!(!stderr.contains(sim.api_key()), "the key never shows");
}
