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
    /// How many `mail:account:update` calls still fail as a container that
    /// went away mid-run would.
    failing_updates: Mutex<u32>,
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
    /// The IMAP password the account logs in with.
    password: String,
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

    /// The next `n` password updates fail (the container stops under them).
    pub fn fail_next_updates(&self, n: u32) {
        *lock(&self.failing_updates) = n;
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

    /// The IMAP passwords of `user`'s accounts for `email`.
    pub fn passwords(&self, user: &str, email: &str) -> Vec<String> {
        let state = lock(&self.state);
        let accounts = state.accounts.iter();
        let ours = accounts.filter(|a| a.user == user && a.email == email);
        ours.map(|a| a.password.clone()).collect()
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
            password: String::new(),
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
        let [
            user,
            _name,
            email,
            imap_host,
            _port,
            _security,
            _login,
            password,
            ..,
        ] = args
        else {
            return exited(1, "not enough arguments".into());
        };
        if !self.users.contains(*user) {
            return exited(1, format!("User {user} does not exist"));
        }
        let id = self.add(user, email, imap_host, false);
        if let Some(account) = self.accounts.last_mut() {
            account.password = (*password).to_owned();
        }
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

    /// `--imap-password=<p>` among the options sets the password.
    fn update(&mut self, id: &str, options: &[&str]) -> ExecOutput {
        let Some(account) = self.accounts.iter_mut().find(|a| a.id.to_string() == id) else {
            return exited(1, "No Email Account found".into());
        };
        if let Some(password) = options
            .iter()
            .find_map(|o| o.strip_prefix("--imap-password="))
        {
            account.password = password.to_owned();
        }
        done(String::new())
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
        if argv[at] == "mail:account:update" {
            let mut failing = lock(&self.failing_updates);
            if *failing > 0 {
                *failing -= 1;
                return Err(ExecError::Unavailable("container stopped".into()));
            }
        }
        let mut state = lock(&self.state);
        Ok(match argv[at] {
            "mail:account:export" => state.export(first),
            "user:info" => state.user_info(first),
            "mail:account:create" => state.create(positional),
            "mail:account:delete" => state.delete(first),
            "mail:account:update" => state.update(first, &argv[at + 1..]),
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
