//! An in-memory `occ` behind [`CommandRunner`], for tests that run the agent
//! in process: users and Mail accounts that can be seeded (provisioned ones
//! too), the `mail:account:*` and `user:info` commands the agent runs, and a
//! switch that makes every command fail the way Nextcloud or Docker can.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use reconciler_runtime::exec::{CommandRunner, ExecError, ExecOutput};
use serde_json::json;

type Fault = Box<dyn Fn() -> Result<ExecOutput, ExecError> + Send + Sync>;

#[derive(Default)]
pub struct FakeOcc {
    state: Mutex<State>,
    fault: Mutex<Option<Fault>>,
}

#[derive(Default)]
struct State {
    users: BTreeSet<String>,
    accounts: Vec<Account>,
    last_id: i64,
}

struct Account {
    id: i64,
    user: String,
    email: String,
    imap_host: String,
    provisioned: bool,
}

impl FakeOcc {
    /// Every command answers `fault()` from now on: an [`ExecError`]
    /// (container down) or what occ prints when Nextcloud as a whole is
    /// unwell (maintenance mode, wrong uid).
    pub fn fail_with(
        &self,
        fault: impl Fn() -> Result<ExecOutput, ExecError> + Send + Sync + 'static,
    ) {
        *lock(&self.fault) = Some(Box::new(fault));
    }

    pub fn add_user(&self, user: &str) {
        lock(&self.state).users.insert(user.to_owned());
    }

    /// A Mail account someone else made; `provisioned`: by Nextcloud's
    /// provisioning rather than by hand. Returns its id.
    pub fn add_account(&self, user: &str, email: &str, provisioned: bool) -> i64 {
        let mut state = lock(&self.state);
        state.users.insert(user.to_owned());
        state.add(user, email, "", provisioned)
    }

    /// The ids of `user`'s accounts.
    pub fn account_ids(&self, user: &str) -> Vec<i64> {
        let state = lock(&self.state);
        let ids = state.accounts.iter().filter(|a| a.user == user);
        ids.map(|a| a.id).collect()
    }
}

impl State {
    fn add(&mut self, user: &str, email: &str, imap_host: &str, provisioned: bool) -> i64 {
        self.last_id += 1;
        self.accounts.push(Account {
            id: self.last_id,
            user: user.to_owned(),
            email: email.to_owned(),
            imap_host: imap_host.to_owned(),
            provisioned,
        });
        self.last_id
    }

    fn export(&self, user: &str) -> ExecOutput {
        let accounts: Vec<_> = self
            .accounts
            .iter()
            .filter(|a| a.user == user)
            .map(|a| {
                json!({
                    "id": a.id,
                    "email": a.email,
                    "name": a.email,
                    "imap": { "user": a.email, "host": a.imap_host },
                    "provision": { "status": if a.provisioned { "active" } else { "none" } },
                })
            })
            .collect();
        done(json!(accounts).to_string())
    }

    fn user_info(&self, user: &str) -> ExecOutput {
        match self.users.contains(user) {
            true => done(json!({ "user_id": user }).to_string()),
            false => exited(1, format!("user {user} not found")),
        }
    }

    /// `user name email imap-host imap-port imap-security imap-user
    /// imap-password smtp-host …`, as the agent passes them.
    fn create(&mut self, args: &[&str]) -> ExecOutput {
        let [user, _name, email, imap_host, ..] = args else {
            return exited(1, "not enough arguments".into());
        };
        if !self.users.contains(*user) {
            return exited(1, format!("User {user} does not exist"));
        }
        let id = self.add(user, email, imap_host, false);
        done(format!("Account {id} for {email} created"))
    }

    fn delete(&mut self, id: &str) -> ExecOutput {
        match self.accounts.iter().position(|a| a.id.to_string() == id) {
            None => exited(1, format!("Account {id} does not exist")),
            Some(i) if self.accounts[i].provisioned => {
                exited(2, "provisioned accounts cannot be deleted".into())
            }
            Some(i) => {
                self.accounts.remove(i);
                done(String::new())
            }
        }
    }

    fn update(&self, id: &str) -> ExecOutput {
        match self.accounts.iter().any(|a| a.id.to_string() == id) {
            true => done(String::new()),
            false => exited(1, "No Email Account found".into()),
        }
    }
}

#[tonic::async_trait]
impl CommandRunner for FakeOcc {
    async fn run(&self, argv: &[String]) -> Result<ExecOutput, ExecError> {
        if let Some(fault) = &*lock(&self.fault) {
            return fault();
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let Some(at) = argv
            .iter()
            .position(|a| a.starts_with("mail:") || a.starts_with("user:"))
        else {
            return Ok(exited(127, "not an occ command".into()));
        };
        // Every positional argument comes after `--`.
        let positional = match argv.iter().position(|a| *a == "--") {
            Some(dashes) => &argv[dashes + 1..],
            None => &[][..],
        };
        let first = positional.first().copied().unwrap_or_default();
        let mut state = lock(&self.state);
        Ok(match argv[at] {
            "mail:account:export" => state.export(first),
            "user:info" => state.user_info(first),
            "mail:account:create" => state.create(positional),
            "mail:account:delete" => state.delete(first),
            "mail:account:update" => state.update(first),
            other => exited(1, format!("Command \"{other}\" is not defined.")),
        })
    }
}

fn done(stdout: String) -> ExecOutput {
    exited(0, stdout)
}

fn exited(exit_code: i64, stdout: String) -> ExecOutput {
    ExecOutput {
        stdout,
        stderr: String::new(),
        exit_code,
    }
}

/// Nothing here is left half-updated by a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
