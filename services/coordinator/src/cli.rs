//! The `coordinator` command line: with no command it serves; `plan` and
//! `explain` ask a running coordinator over gRPC with the admin token;
//! `certs` makes the certificates for mutual TLS with the agents
//! ([`crate::certs`]).
//!
//! ```sh
//! coordinator plan [--subject sweep|user:alice|group:support] [--json]
//! coordinator explain alice [--json]
//! coordinator explain alice --url https://coordinator:50050 --ca-file tls/ca.pem
//! coordinator healthcheck [--url http://127.0.0.1:5000/healthz]
//! coordinator certs --out DIR --agent mailcow-agent[=SAN,SAN…]… [--server coordinator-grpc[=SAN…]] [--days N] [--force]
//! ```
//!
//! `plan` exits 0 when everything is in sync, 2 when changes are pending
//! and 1 on an error, like `terraform plan -detailed-exitcode`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reconciler_proto::coordinator::{
    self as pb, coordinator_client::CoordinatorClient, subject::Kind,
};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::secrets::read_secret;
use tonic::transport::{Certificate, ClientTlsConfig};

#[derive(Parser)]
#[command(name = "coordinator", about = "authentik-reconciler's coordinator")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve (the default): configured from the environment (README).
    Serve,
    /// What a run would change now, grouped by target.
    Plan {
        /// `sweep` (everything), `user:<name>` or `group:<name or uuid>`.
        #[arg(long, default_value = "sweep")]
        subject: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Everything a user holds, the groups that grant it, and what is pending.
    Explain {
        /// Username, email or pk.
        user: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Exits 0 when the coordinator running here answers `GET /healthz`
    /// with 200 (state DB, Authentik and every agent reachable), 1
    /// otherwise: the container image's `HEALTHCHECK`.
    Healthcheck {
        /// Default: `/healthz` on `HTTP_LISTEN` (a wildcard address is
        /// probed on loopback).
        #[arg(long)]
        url: Option<String>,
    },
    /// A private CA and the certificates for mutual TLS between the
    /// coordinator and its agents. Existing keys are kept unless --force.
    Certs {
        /// The directory to write into (made if missing).
        #[arg(long)]
        out: PathBuf,
        /// A server certificate, an agent's or the coordinator's operator
        /// port's (`--server coordinator-grpc=…`, for GRPC_TLS_CERT_FILE):
        /// `NAME` (valid for NAME, localhost and 127.0.0.1) or
        /// `NAME=SAN,SAN…` (and those names or addresses).
        #[arg(
            long = "agent",
            visible_alias = "server",
            value_name = "NAME[=SAN,SAN…]"
        )]
        agents: Vec<crate::certs::AgentSpec>,
        /// Days the certificates made now are valid (the CA: at least ten years).
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Replace existing keys and certificates, the CA's included.
        #[arg(long)]
        force: bool,
        /// The name in the coordinator's client certificate (agents may
        /// require it: AGENT_TLS_CLIENT_NAME).
        #[arg(long, default_value = "coordinator")]
        coordinator_name: String,
    },
}

#[derive(clap::Args)]
pub struct Connect {
    /// The coordinator's gRPC address.
    #[arg(
        long,
        env = "COORDINATOR_URL",
        default_value = "http://127.0.0.1:50050"
    )]
    url: String,
    /// With an `https://` URL: the CA that signed the coordinator's
    /// `GRPC_TLS_CERT_FILE` (e.g. `ca.pem` from `coordinator certs`);
    /// without it, the system's trusted roots.
    #[arg(long, env = "COORDINATOR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs a client command; the token comes from `ADMIN_TOKEN` or
/// `ADMIN_TOKEN_FILE`.
pub async fn run(command: Command) -> ExitCode {
    if let Command::Healthcheck { url } = command {
        return crate::healthcheck::run(url).await;
    }
    match client_command(command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coordinator: {e}");
            ExitCode::from(1)
        }
    }
}

type Client = CoordinatorClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, SendToken>,
>;

async fn connect(connect: &Connect) -> Result<Client, String> {
    let lookup = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let token = read_secret(lookup, "ADMIN_TOKEN")
        .map_err(|e| e.to_string())?
        .ok_or("ADMIN_TOKEN (or ADMIN_TOKEN_FILE) is required")?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(connect.url.clone())
        .map_err(|e| format!("{}: {e}", connect.url))?;
    if connect.url.starts_with("https://") {
        let tls = match &connect.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("COORDINATOR_CA_FILE `{}`: {e}", path.display()))?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| match &connect.ca_file {
                Some(path) => format!("{} with --ca-file {}: {e}", connect.url, path.display()),
                None => format!("{}: {e}", connect.url),
            })?;
    } else if connect.ca_file.is_some() {
        return Err(format!(
            "COORDINATOR_CA_FILE is for TLS, but {} is not an https:// URL",
            connect.url
        ));
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the coordinator at {}: {e}", connect.url))?;
    Ok(CoordinatorClient::with_interceptor(
        channel,
        SendToken::new(token),
    ))
}

async fn client_command(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Serve | Command::Healthcheck { .. } => {
            Err("serve and healthcheck are not admin client commands".into())
        }
        Command::Certs {
            out,
            agents,
            days,
            force,
            coordinator_name,
        } => {
            crate::certs::run(&crate::certs::CertsRequest {
                out,
                agents,
                days,
                force,
                coordinator_name,
            })
            .map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            subject,
            connect: c,
        } => {
            let subject = parse_subject(&subject)?;
            let mut client = connect(&c).await?;
            let plan = client
                .plan(pb::PlanRequest { subject })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            if c.json {
                println!("{}", plan_json(&plan));
            } else {
                print!("{}", render_plan(&plan));
            }
            Ok(ExitCode::from(if plan.changes.is_empty() { 0 } else { 2 }))
        }
        Command::Explain { user, connect: c } => {
            let mut client = connect(&c).await?;
            let answer = client
                .explain(pb::ExplainRequest { user })
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner();
            if c.json {
                println!("{}", explain_json(&answer));
            } else {
                print!("{}", render_explain(&answer));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_subject(s: &str) -> Result<Option<pb::Subject>, String> {
    let kind = match s.split_once(':') {
        None if s == "sweep" => return Ok(None),
        Some(("user", u)) if !u.trim().is_empty() => Kind::User(u.trim().into()),
        Some(("group", g)) if !g.trim().is_empty() => Kind::Group(g.trim().into()),
        _ => return Err(format!("`{s}` is not sweep, user:<name> or group:<name>")),
    };
    Ok(Some(pb::Subject { kind: Some(kind) }))
}

/// `RESOURCE_SENDER_ACL` → `sender_acl`.
fn resource_name(resource: i32) -> String {
    let name = pb::Resource::try_from(resource).map_or("unknown", |r| r.as_str_name());
    name.trim_start_matches("RESOURCE_").to_ascii_lowercase()
}

fn action_name(action: i32) -> String {
    let name = pb::Action::try_from(action).map_or("unknown", |a| a.as_str_name());
    name.trim_start_matches("ACTION_").to_ascii_lowercase()
}

/// `+` adds, `-` removes, `~` changes on the target; `·` is the state DB
/// only (adopt, record as a person's, forget, a grace period).
fn sign(action: i32) -> &'static str {
    match pb::Action::try_from(action) {
        Ok(pb::Action::Create) => "+",
        Ok(pb::Action::Delete) => "-",
        Ok(pb::Action::Update | pb::Action::Rotate | pb::Action::Rekey | pb::Action::Evict) => "~",
        _ => "·",
    }
}

fn describe(change: &pb::PlannedChange) -> String {
    let mut line = format!(
        "{} {} {}",
        sign(change.action),
        resource_name(change.resource),
        change.key.replace('|', " → ")
    );
    if sign(change.action) == "·" {
        line.push_str(&format!(" [{}]", action_name(change.action)));
    }
    if !change.groups.is_empty() {
        let noun = if change.groups.len() == 1 {
            "group"
        } else {
            "groups"
        };
        line.push_str(&format!(" ({noun} {})", change.groups.join(", ")));
    }
    if !change.reason.is_empty() {
        line.push_str(&format!(": {}", change.reason));
    }
    line
}

pub fn render_plan(plan: &pb::PlanResponse) -> String {
    let mut by_target: BTreeMap<&str, Vec<&pb::PlannedChange>> = BTreeMap::new();
    for change in &plan.changes {
        let target = if change.target.is_empty() {
            "(no agent configured)"
        } else {
            change.target.as_str()
        };
        by_target.entry(target).or_default().push(change);
    }
    let mut out = String::new();
    for (target, changes) in by_target {
        out.push_str(&format!("{target}\n"));
        for change in changes {
            out.push_str(&format!("  {}\n", describe(change)));
        }
    }
    for warning in &plan.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    if plan.removals_held > 0 {
        out.push_str(&format!("held removals: {}\n", plan.removals_held));
    }
    if plan.changes.is_empty() {
        out.push_str("in sync: nothing to change\n");
    } else {
        out.push_str(&format!("{} change(s) pending\n", plan.changes.len()));
    }
    out
}

fn change_json(c: &pb::PlannedChange) -> serde_json::Value {
    serde_json::json!({
        "action": action_name(c.action),
        "resource": resource_name(c.resource),
        "key": c.key,
        "target": c.target,
        "user": c.user,
        "groups": c.groups,
        "reason": c.reason,
        "object": serde_json::from_str::<serde_json::Value>(&c.detail).unwrap_or_default(),
    })
}

fn plan_json(plan: &pb::PlanResponse) -> serde_json::Value {
    serde_json::json!({
        "changes": plan.changes.iter().map(change_json).collect::<Vec<_>>(),
        "warnings": plan.warnings,
        "removals_held": plan.removals_held,
    })
}

pub fn render_explain(e: &pb::ExplainResponse) -> String {
    let mut out = format!(
        "{}{}\n",
        e.user,
        if e.in_directory {
            ""
        } else {
            " (not in Authentik)"
        }
    );
    if !e.groups.is_empty() {
        out.push_str(&format!("groups: {}\n", e.groups.join(", ")));
    }
    out.push_str("holds:\n");
    if e.grants.is_empty() {
        out.push_str("  nothing\n");
    }
    for g in &e.grants {
        let state = pb::LedgerState::try_from(g.state)
            .map_or("unknown", |s| s.as_str_name())
            .trim_start_matches("LEDGER_STATE_")
            .to_ascii_lowercase();
        let via = if g.chains.is_empty() {
            String::new()
        } else {
            format!(" ← {}", g.chains.join(" | "))
        };
        out.push_str(&format!(
            "  {} {} {} [{state}]{via}\n",
            if g.target.is_empty() { "-" } else { &g.target },
            resource_name(g.resource),
            g.key.replace('|', " → "),
        ));
    }
    if !e.pending.is_empty() {
        out.push_str("pending changes:\n");
        for change in &e.pending {
            out.push_str(&format!("  {}\n", describe(change)));
        }
    }
    for p in &e.pending_removals {
        out.push_str(&format!(
            "pending removal: {} {} due {} ({})\n",
            resource_name(p.resource),
            p.key.replace('|', " → "),
            crate::audit_api::format_time(p.due_at_ms),
            p.reason
        ));
    }
    for f in &e.failing {
        out.push_str(&format!(
            "failing: {} {} ({} time(s), next attempt {}): {}\n",
            resource_name(f.resource),
            f.key.replace('|', " → "),
            f.failures,
            crate::audit_api::format_time(f.next_attempt_ms),
            f.last_error
        ));
    }
    for w in &e.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn explain_json(e: &pb::ExplainResponse) -> serde_json::Value {
    serde_json::json!({
        "user": e.user,
        "in_directory": e.in_directory,
        "groups": e.groups,
        "grants": e.grants.iter().map(|g| serde_json::json!({
            "target": g.target,
            "resource": resource_name(g.resource),
            "key": g.key,
            "state": pb::LedgerState::try_from(g.state).map_or("unknown", |s| s.as_str_name()),
            "chains": g.chains,
        })).collect::<Vec<_>>(),
        "pending": e.pending.iter().map(change_json).collect::<Vec<_>>(),
        "pending_removals": e.pending_removals.iter().map(|p| serde_json::json!({
            "resource": resource_name(p.resource), "key": p.key, "due_at_ms": p.due_at_ms, "reason": p.reason,
        })).collect::<Vec<_>>(),
        "failing": e.failing.iter().map(|f| serde_json::json!({
            "resource": resource_name(f.resource), "key": f.key, "failures": f.failures,
            "next_attempt_ms": f.next_attempt_ms, "last_error": f.last_error,
        })).collect::<Vec<_>>(),
        "warnings": e.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_a_diff_grouped_by_target() {
        let change = |action: pb::Action, resource: pb::Resource, key: &str, target: &str| {
            pb::PlannedChange {
                action: action as i32,
                resource: resource as i32,
                key: key.into(),
                target: target.into(),
                groups: vec!["support".into()],
                reason: "granted by group".into(),
                ..Default::default()
            }
        };
        let plan = pb::PlanResponse {
            changes: vec![
                change(
                    pb::Action::Create,
                    pb::Resource::SenderAcl,
                    "bob@example.com|info@example.com",
                    "mailcow-agent",
                ),
                change(
                    pb::Action::Delete,
                    pb::Resource::MatrixMembership,
                    "!r:x|@bob:x",
                    "matrix-agent",
                ),
                change(
                    pb::Action::Forget,
                    pb::Resource::Alias,
                    "team@example.com",
                    "",
                ),
            ],
            warnings: vec!["1 removal(s) held: user count fell".into()],
            removals_held: 1,
        };
        let text = render_plan(&plan);
        assert!(
            text.contains(
                "mailcow-agent\n  + sender_acl bob@example.com → info@example.com (group support): granted by group\n"
            ),
            "{text}"
        );
        assert!(text.contains("matrix-agent\n  - matrix_membership !r:x → @bob:x"));
        assert!(text.contains("· alias team@example.com [forget]"));
        assert!(text.contains("held removals: 1\n3 change(s) pending\n"));
        assert_eq!(parse_subject("sweep").unwrap(), None);
        assert!(parse_subject("users:x").is_err());
    }
}
