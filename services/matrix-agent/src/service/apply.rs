//! Apply: each change diffs against what Synapse shows before it acts, so
//! asking for what already is writes nothing and says UNCHANGED, and a
//! dry run reads exactly what the real run would.

use reconciler_proto::agent::{
    ChangeResult, MatrixCreateUser, MatrixSetPowerLevel, Outcome, matrix_change::Kind,
};

use super::MatrixAgent;
use super::observe::valid_user_id;
use crate::error::{Error, Result};
use crate::synapse::{Account, Change, ForceJoin, Kick, LinkedAccount, Membership};

/// What one change did.
struct Done {
    outcome: Outcome,
    message: String,
    remote_id: String,
}

impl Done {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            remote_id: String::new(),
        }
    }
}

/// The membership changes, each with its reason where it takes one.
#[derive(Clone, Copy)]
enum Action<'a> {
    Invite(&'a str),
    ForceJoin,
    Kick(&'a str),
    Ban(&'a str),
    Unban(&'a str),
}

impl Action<'_> {
    fn verb(self) -> &'static str {
        match self {
            Action::Invite(_) => "invite",
            Action::ForceJoin => "force-join",
            Action::Kick(_) => "kick",
            Action::Ban(_) => "ban",
            Action::Unban(_) => "unban",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Action::Invite(_) => "invited",
            Action::ForceJoin => "force-joined",
            Action::Kick(_) => "kicked",
            Action::Ban(_) => "banned",
            Action::Unban(_) => "unbanned",
        }
    }

    /// Why there is nothing to do, given the user's membership now.
    fn settled(self, membership: Option<&Membership>) -> Option<&'static str> {
        use Membership::*;
        match (self, membership) {
            (Action::Invite(_) | Action::ForceJoin, Some(Join)) => Some("already joined"),
            (Action::Invite(_), Some(Invite)) => Some("already invited"),
            (Action::Kick(_), m) if !matches!(m, Some(Join | Invite | Knock)) => {
                Some("not in the room")
            }
            (Action::Ban(_), Some(Ban)) => Some("already banned"),
            (Action::Unban(_), m) if m != Some(&Ban) => Some("not banned"),
            _ => None,
        }
    }
}

impl MatrixAgent {
    pub(super) async fn apply_one(
        &self,
        id: String,
        kind: Option<Kind>,
        dry_run: bool,
    ) -> ChangeResult {
        let result = match &kind {
            Some(Kind::Invite(c)) => {
                let action = Action::Invite(&c.reason);
                self.membership(&c.room, &c.user_id, action, dry_run).await
            }
            Some(Kind::ForceJoin(c)) => {
                self.membership(&c.room, &c.user_id, Action::ForceJoin, dry_run)
                    .await
            }
            Some(Kind::Kick(c)) => {
                let action = Action::Kick(&c.reason);
                self.membership(&c.room, &c.user_id, action, dry_run).await
            }
            Some(Kind::Ban(c)) => {
                let action = Action::Ban(&c.reason);
                self.membership(&c.room, &c.user_id, action, dry_run).await
            }
            Some(Kind::Unban(c)) => {
                let action = Action::Unban(&c.reason);
                self.membership(&c.room, &c.user_id, action, dry_run).await
            }
            Some(Kind::SetPowerLevel(c)) => self.power_level(c, dry_run).await,
            Some(Kind::CreateUser(c)) => self.create_user(c, dry_run).await,
            None => Err(Error::invalid("the change has no kind")),
        };
        let done = result.unwrap_or_else(|e| Done::new(e.outcome(), e.to_string()));
        ChangeResult {
            id,
            outcome: done.outcome as i32,
            message: done.message,
            remote_id: done.remote_id,
            ..Default::default()
        }
    }

    /// The room's id, once the change's room and user are well-formed.
    async fn room_for(&self, room: &str, user_id: &str) -> Result<String> {
        if room.trim().is_empty() {
            return Err(Error::invalid("the change names no room"));
        }
        if !valid_user_id(user_id) {
            return Err(Error::invalid(format!("`{user_id}` is not a Matrix ID")));
        }
        self.api.room_id(room).await
    }

    async fn membership(
        &self,
        room: &str,
        user_id: &str,
        action: Action<'_>,
        dry_run: bool,
    ) -> Result<Done> {
        let room_id = self.room_for(room, user_id).await?;
        let _room = self.objects.lock(&room_id).await;
        let membership = self.api.membership_of(&room_id, user_id).await?;
        if let Some(why) = action.settled(membership.as_ref()) {
            return Ok(Done::new(
                Outcome::Unchanged,
                format!("{user_id} {why} in {room_id}"),
            ));
        }
        if dry_run {
            let verb = action.verb();
            return Ok(Done::new(
                Outcome::DryRun,
                format!("would {verb} {user_id} in {room_id}"),
            ));
        }
        let outcome = match action {
            Action::Invite(reason) => {
                let reason = Some(reason).filter(|r| !r.is_empty());
                self.api.invite(&room_id, user_id, reason).await?;
                Outcome::Applied
            }
            Action::ForceJoin => match self.api.force_join(&room_id, user_id).await? {
                ForceJoin::Joined => Outcome::Applied,
                // Joined between our read and the join: by someone else.
                ForceJoin::AlreadyJoined => Outcome::Unchanged,
            },
            Action::Kick(reason) => match self.api.kick(&room_id, user_id, reason).await? {
                Kick::Kicked => Outcome::Applied,
                Kick::NotInRoom => Outcome::Unchanged,
            },
            Action::Ban(reason) => {
                self.api.ban(&room_id, user_id, reason).await?;
                Outcome::Applied
            }
            Action::Unban(reason) => {
                self.api.unban(&room_id, user_id, reason).await?;
                Outcome::Applied
            }
        };
        let message = match outcome {
            Outcome::Applied => format!("{} {user_id} in {room_id}", action.done()),
            _ => format!("{user_id} already as asked in {room_id}"),
        };
        Ok(Done::new(outcome, message))
    }

    async fn power_level(&self, c: &MatrixSetPowerLevel, dry_run: bool) -> Result<Done> {
        let (user_id, level) = (c.user_id.as_str(), c.level);
        let room_id = self.room_for(&c.room, user_id).await?;
        let what = match level {
            Some(level) => format!("power level {level}"),
            None => "the room's default power level".to_owned(),
        };
        let _room = self.objects.lock(&room_id).await;
        let unchanged = || {
            Done::new(
                Outcome::Unchanged,
                format!("{user_id} has {what} in {room_id} already"),
            )
        };
        if dry_run {
            let state = self.api.room_state(&room_id).await?;
            if state.power_levels.user_entry(user_id) == level {
                return Ok(unchanged());
            }
            let message = format!("would give {user_id} {what} in {room_id}");
            return Ok(Done::new(Outcome::DryRun, message));
        }
        Ok(
            match self.api.set_power_level(&room_id, user_id, level).await? {
                Change::Changed => Done::new(
                    Outcome::Applied,
                    format!("gave {user_id} {what} in {room_id}"),
                ),
                Change::Unchanged => unchanged(),
            },
        )
    }

    async fn create_user(&self, c: &MatrixCreateUser, dry_run: bool) -> Result<Done> {
        let localpart = c.localpart.trim();
        if localpart.is_empty() || localpart.contains([':', '@']) {
            return Err(Error::invalid(format!("`{localpart}` is not a localpart")));
        }
        let (provider, external_id) = (c.auth_provider.as_str(), c.external_id.as_str());
        if provider.is_empty() || external_id.is_empty() {
            return Err(Error::invalid(
                "an account is created linked: auth_provider and external_id are required",
            ));
        }
        let bot = self.bot().await?;
        let server = bot
            .split_once(':')
            .map(|(_, server)| server)
            .ok_or_else(|| Error::invalid(format!("the bot's ID `{bot}` names no server")))?;
        let user_id = format!("@{localpart}:{server}");
        let _user = self.objects.lock(&user_id).await;
        let done = |outcome, message: String| Done {
            outcome,
            message,
            remote_id: user_id.clone(),
        };
        match self.api.user_by_external_id(provider, external_id).await? {
            Some(linked) if linked == user_id => {
                let message = format!("{user_id} exists, linked to {provider} {external_id}");
                return Ok(done(Outcome::Unchanged, message));
            }
            // Linking it here as well would let one SSO login reach two
            // accounts; a person must decide which one is right.
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{provider} {external_id} is linked to {other} already, not to {user_id}"
                )));
            }
            None => {}
        }
        let exists = match self.api.account(&user_id).await? {
            Account::Deactivated => {
                return Err(Error::invalid(format!("{user_id} is deactivated")));
            }
            Account::Active => true,
            Account::Absent => false,
        };
        if dry_run {
            let verb = if exists { "link" } else { "create" };
            let message = format!("would {verb} {user_id} for {provider} {external_id}");
            return Ok(done(Outcome::DryRun, message));
        }
        let displayname = Some(c.displayname.as_str()).filter(|d| !d.is_empty());
        let made = self
            .api
            .create_linked_account(&user_id, provider, external_id, displayname)
            .await?;
        let verb = match made {
            LinkedAccount::Created => "created",
            LinkedAccount::Linked => "linked",
        };
        let message = format!("{verb} {user_id} for {provider} {external_id}");
        Ok(done(Outcome::Applied, message))
    }
}
