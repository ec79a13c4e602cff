//! [`MatrixApi`] over Synapse's HTTP APIs.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{ClientConfig, Http};
use super::paths::seg;
use super::state::{PowerLevels, RoomState, parse_state};
use super::stats::CallStats;
use super::{Account, Change, ForceJoin, Kick, LinkedAccount, MatrixApi, Membership};
use crate::error::{Error, Result};

const CLIENT: &str = "/_matrix/client/v3";
const ADMIN_V1: &str = "/_synapse/admin/v1";
const ADMIN_V2: &str = "/_synapse/admin/v2";

pub struct SynapseClient {
    http: Http,
}

impl SynapseClient {
    pub fn new(config: &ClientConfig) -> Result<Self> {
        Ok(Self {
            http: Http::new(config)?,
        })
    }

    /// Requests sent so far, by call, and rate-limit waits.
    pub fn stats(&self) -> CallStats {
        self.http.counters.snapshot()
    }

    async fn get(&self, call: &'static str, path: &str) -> Result<Value> {
        Ok(self.http.call(call, Method::GET, path, None).await?.1)
    }

    async fn post(&self, call: &'static str, path: &str, body: Value) -> Result<Value> {
        Ok(self
            .http
            .call(call, Method::POST, path, Some(&body))
            .await?
            .1)
    }

    /// kick, ban, unban and invite: `POST /rooms/{room}/{action}`.
    async fn membership_action(
        &self,
        call: &'static str,
        room_id: &str,
        user_id: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut body = json!({ "user_id": user_id });
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        let path = format!("{CLIENT}/rooms/{}/{call}", seg(room_id));
        self.post(call, &path, body).await.map(drop)
    }
}

/// A string field of an answer; its absence means Synapse answered
/// something else than what the API documents.
fn field(call: &'static str, body: &Value, key: &str) -> Result<String> {
    body.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::Permanent {
            call,
            status: 200,
            errcode: "UNEXPECTED_ANSWER".into(),
            reason: format!("the answer has no `{key}`"),
        })
}

/// `.` and `..` are resolved away by URL parsing even when encoded, so they
/// cannot be sent as a segment.
fn plain_segment(call: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(Error::Permanent {
            call,
            status: 0,
            errcode: "INVALID_ID".into(),
            reason: format!("`{value}` cannot be looked up"),
        });
    }
    Ok(())
}

#[async_trait]
impl MatrixApi for SynapseClient {
    async fn whoami(&self) -> Result<String> {
        let body = self
            .get("whoami", &format!("{CLIENT}/account/whoami"))
            .await?;
        field("whoami", &body, "user_id")
    }

    async fn server_version(&self) -> Result<String> {
        let body = self
            .get("server_version", &format!("{ADMIN_V1}/server_version"))
            .await?;
        field("server_version", &body, "server_version")
    }

    async fn room_id(&self, room: &str) -> Result<String> {
        if !room.starts_with('#') {
            return Ok(room.to_owned());
        }
        let path = format!("{CLIENT}/directory/room/{}", seg(room));
        let body = self.get("resolve_alias", &path).await?;
        field("resolve_alias", &body, "room_id")
    }

    async fn joined_members(&self, room_id: &str) -> Result<Vec<String>> {
        let path = format!("{ADMIN_V1}/rooms/{}/members", seg(room_id));
        let body = self.get("joined_members", &path).await?;
        let members = body.get("members").and_then(Value::as_array);
        Ok(members
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect())
    }

    async fn room_state(&self, room_id: &str) -> Result<RoomState> {
        let path = format!("{ADMIN_V1}/rooms/{}/state", seg(room_id));
        let body = self.get("room_state", &path).await?;
        Ok(parse_state(&body))
    }

    /// The client API's single state event, as the bot (which is in every
    /// room it can change); not found: no membership yet.
    async fn membership_of(&self, room_id: &str, user_id: &str) -> Result<Option<Membership>> {
        const CALL: &str = "member_state";
        let path = format!(
            "{CLIENT}/rooms/{}/state/m.room.member/{}",
            seg(room_id),
            seg(user_id)
        );
        match self.get(CALL, &path).await {
            Ok(body) => Ok(body
                .get("membership")
                .and_then(Value::as_str)
                .map(Membership::parse)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn invite(&self, room_id: &str, user_id: &str, reason: Option<&str>) -> Result<()> {
        self.membership_action("invite", room_id, user_id, reason)
            .await
    }

    async fn force_join(&self, room_id: &str, user_id: &str) -> Result<ForceJoin> {
        let path = format!("{ADMIN_V1}/join/{}", seg(room_id));
        match self
            .post("force_join", &path, json!({ "user_id": user_id }))
            .await
        {
            Ok(_) => Ok(ForceJoin::Joined),
            // The admin join API is not idempotent: a joined user is a 403.
            Err(e)
                if e.errcode() == Some("M_FORBIDDEN")
                    && e.reason()
                        .is_some_and(|r| r.contains("already in the room")) =>
            {
                Ok(ForceJoin::AlreadyJoined)
            }
            Err(e) => Err(e),
        }
    }

    async fn kick(&self, room_id: &str, user_id: &str, reason: &str) -> Result<Kick> {
        match self
            .membership_action("kick", room_id, user_id, Some(reason))
            .await
        {
            Ok(()) => Ok(Kick::Kicked),
            Err(e)
                if e.errcode() == Some("M_FORBIDDEN")
                    && e.reason().is_some_and(|r| r.contains("not in the room")) =>
            {
                Ok(Kick::NotInRoom)
            }
            Err(e) => Err(e),
        }
    }

    async fn ban(&self, room_id: &str, user_id: &str, reason: &str) -> Result<()> {
        self.membership_action("ban", room_id, user_id, Some(reason))
            .await
    }

    async fn unban(&self, room_id: &str, user_id: &str, reason: &str) -> Result<()> {
        self.membership_action("unban", room_id, user_id, Some(reason))
            .await
    }

    async fn set_power_level(
        &self,
        room_id: &str,
        user_id: &str,
        level: Option<i64>,
    ) -> Result<Change> {
        // Read through the client API, as the writer: what we send back
        // replaces the whole event, so it must be what the bot would see.
        let path = format!("{CLIENT}/rooms/{}/state/m.room.power_levels", seg(room_id));
        let current = self.get("power_levels", &path).await?;
        let Value::Object(content) = current else {
            return Err(Error::Permanent {
                call: "power_levels",
                status: 200,
                errcode: "UNEXPECTED_ANSWER".into(),
                reason: "m.room.power_levels is not an object".into(),
            });
        };
        let mut levels = PowerLevels(content);
        if !levels.set_user(user_id, level) {
            return Ok(Change::Unchanged);
        }
        let body = Value::Object(levels.0);
        self.http
            .call("set_power_levels", Method::PUT, &path, Some(&body))
            .await?;
        Ok(Change::Changed)
    }

    async fn user_by_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> Result<Option<String>> {
        const CALL: &str = "user_by_external_id";
        plain_segment(CALL, auth_provider)?;
        plain_segment(CALL, external_id)?;
        let path = format!(
            "{ADMIN_V1}/auth_providers/{}/users/{}",
            seg(auth_provider),
            seg(external_id)
        );
        match self.get(CALL, &path).await {
            Ok(body) => field(CALL, &body, "user_id").map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn account(&self, user_id: &str) -> Result<Account> {
        let path = format!("{ADMIN_V2}/users/{}", seg(user_id));
        match self.get("account", &path).await {
            Ok(body) if body.get("deactivated").and_then(Value::as_bool) == Some(true) => {
                Ok(Account::Deactivated)
            }
            Ok(_) => Ok(Account::Active),
            Err(e) if e.is_not_found() => Ok(Account::Absent),
            Err(e) => Err(e),
        }
    }

    async fn create_linked_account(
        &self,
        user_id: &str,
        auth_provider: &str,
        external_id: &str,
        displayname: Option<&str>,
    ) -> Result<LinkedAccount> {
        let mut body = json!({
            "external_ids": [{ "auth_provider": auth_provider, "external_id": external_id }],
        });
        if let Some(name) = displayname {
            body["displayname"] = json!(name);
        }
        let path = format!("{ADMIN_V2}/users/{}", seg(user_id));
        let (status, _) = self
            .http
            .call("create_linked_account", Method::PUT, &path, Some(&body))
            .await?;
        Ok(if status == StatusCode::CREATED {
            LinkedAccount::Created
        } else {
            LinkedAccount::Linked
        })
    }

    async fn exempt_from_rate_limits(&self, user_id: &str) -> Result<()> {
        let path = format!("{ADMIN_V1}/users/{}/override_ratelimit", seg(user_id));
        let body = json!({ "messages_per_second": 0, "burst_count": 0 });
        self.post("override_ratelimit", &path, body).await.map(drop)
    }
}
