//! The commands, with the real messages and exit codes.

use serde_json::json;

use super::argv::{Definition, Input, Opt};
use super::state::{Account, AccountStore, Endpoint, FileAccounts, State, StoreError};

/// One `occ` call.
pub struct Invocation<'a> {
    pub args: &'a [String],
    /// The process's effective uid, and the owner of `config/config.php`.
    pub uid: u32,
    pub config_owner: u32,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// What the call printed and returned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Outcome {
    fn ok(stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            stderr: String::new(),
            code: 0,
        }
    }
}

/// Runs a command against `state` (which the caller persists), with the
/// accounts in the state file.
pub fn run(inv: &Invocation<'_>, state: &mut State) -> Outcome {
    let mut accounts = FileAccounts::take(state);
    let out = run_with(inv, state, &mut accounts);
    accounts.put_back(state);
    out
}

/// Runs a command with the accounts in `accounts`.
pub fn run_with(
    inv: &Invocation<'_>,
    state: &mut State,
    accounts: &mut dyn AccountStore,
) -> Outcome {
    if inv.uid != inv.config_owner {
        // console.php, before anything else.
        return Outcome {
            stdout: format!(
                "Console has to be executed with the user that owns the file config/config.php\n\
                 Current user id: {}\nOwner id of config.php: {}\n\
                 Try adding 'sudo -u #{}' to the beginning of the command (without the single quotes)\n\
                 If running with 'docker exec' try adding the option '-u {}' to the docker command (without the single quotes)\n",
                inv.uid, inv.config_owner, inv.config_owner, inv.config_owner
            ),
            stderr: String::new(),
            code: 1,
        };
    }
    let Some(command) = inv.args.first() else {
        return Outcome::ok("Nextcloud 31.0.0 (occ simulator)\n");
    };
    let rest = &inv.args[1..];
    let mut prefix = String::new();
    if state.maintenance {
        prefix = "Nextcloud is in maintenance mode, no apps are loaded.\n\
                  Commands provided by apps are unavailable.\n"
            .into();
    }
    let apps_loaded = !state.maintenance && state.mail_enabled;
    let command = command.as_str();
    let mut out = match definition(command) {
        None => not_defined(command),
        Some(_)
            if state.maintenance
                && matches!(command, "app:enable" | "app:disable" | "user:add") =>
        {
            not_defined(command)
        }
        Some(_) if command.starts_with("mail:") && !apps_loaded => Outcome {
            stdout: String::new(),
            stderr: "\n  There are no commands defined in the \"mail:account\" namespace.  \n\n"
                .into(),
            code: 1,
        },
        Some(definition) => match definition.parse(rest) {
            Err(message) => console_error(&message),
            Ok(input) => match command {
                "maintenance:mode" => Ok(maintenance(&input, state)),
                "app:enable" | "app:disable" => Ok(app_toggle(command, &input, state)),
                "user:add" => Ok(user_add(&input, inv, state)),
                "user:info" => Ok(user_info(&input, state)),
                "mail:account:create" => create(&input, state, accounts),
                "mail:account:delete" => delete(&input, accounts),
                "mail:account:export" => export(&input, accounts),
                _ => update(&input, accounts),
            }
            .unwrap_or_else(|e| unhandled(&e)),
        },
    };
    out.stderr = prefix + &out.stderr;
    out
}

const MAINTENANCE_OPTIONS: [Opt; 2] = [Opt::flag("on"), Opt::flag("off")];
const APP_ENABLE_OPTIONS: [Opt; 2] = [Opt::value("groups"), Opt::flag("force")];
const USER_ADD_OPTIONS: [Opt; 5] = [
    Opt::flag("password-from-env"),
    Opt::flag("generate-password"),
    Opt::value("display-name"),
    Opt::value("group"),
    Opt::value("email"),
];
const OUTPUT_OPTION: [Opt; 1] = [Opt::value("output")];
const UPDATE_OPTIONS: [Opt; 13] = [
    Opt::value("name"),
    Opt::value("email"),
    Opt::value("imap-host"),
    Opt::value("imap-port"),
    Opt::value("imap-ssl-mode"),
    Opt::value("imap-user"),
    Opt::value("imap-password"),
    Opt::value("smtp-host"),
    Opt::value("smtp-port"),
    Opt::value("smtp-ssl-mode"),
    Opt::value("smtp-user"),
    Opt::value("smtp-password"),
    Opt::value("auth-method"),
];

const CREATE_ARGS: [(&str, bool); 14] = [
    ("user-id", true),
    ("name", true),
    ("email", true),
    ("imap-host", true),
    ("imap-port", true),
    ("imap-ssl-mode", true),
    ("imap-user", true),
    ("imap-password", true),
    ("smtp-host", true),
    ("smtp-port", true),
    ("smtp-ssl-mode", true),
    ("smtp-user", true),
    ("smtp-password", true),
    // An optional 14th positional argument, not an option (B6).
    ("auth-method", false),
];

/// The input definitions of the commands the simulator knows.
fn definition(command: &str) -> Option<Definition<'_>> {
    let (arguments, variadic, options): (&'static [(&'static str, bool)], bool, &'static [Opt]) =
        match command {
            "maintenance:mode" => (&[], false, &MAINTENANCE_OPTIONS),
            "app:enable" => (&[("app-id", true)], true, &APP_ENABLE_OPTIONS),
            "app:disable" => (&[("app-id", true)], true, &[]),
            "user:add" => (&[("uid", true)], false, &USER_ADD_OPTIONS),
            "user:info" => (&[("user", true)], false, &OUTPUT_OPTION),
            "mail:account:create" => (&CREATE_ARGS, false, &[]),
            "mail:account:delete" => (&[("account-id", true)], false, &[]),
            "mail:account:export" => (&[("user-id", true)], false, &OUTPUT_OPTION),
            "mail:account:update" => (&[("account-id", true)], false, &UPDATE_OPTIONS),
            _ => return None,
        };
    Some(Definition {
        name: command,
        arguments,
        variadic,
        options,
    })
}

/// Symfony renders a console exception as an indented block on stderr.
fn console_error(message: &str) -> Outcome {
    Outcome {
        stdout: String::new(),
        stderr: format!("\n  {message}  \n\n"),
        code: 1,
    }
}

/// console.php's handler for an exception nothing caught (a database
/// that went away): the exception on stdout, exit 1.
pub fn unhandled(e: &StoreError) -> Outcome {
    Outcome {
        stdout: format!(
            "An unhandled exception has been thrown:\nDoctrine\\DBAL\\Exception: {}\n",
            e.0
        ),
        stderr: String::new(),
        code: 1,
    }
}

fn not_defined(command: &str) -> Outcome {
    console_error(&format!("Command \"{command}\" is not defined."))
}

fn maintenance(input: &Input, state: &mut State) -> Outcome {
    if input.has("on") {
        state.maintenance = true;
        Outcome::ok("Maintenance mode enabled\n")
    } else if input.has("off") {
        state.maintenance = false;
        Outcome::ok("Maintenance mode disabled\n")
    } else {
        Outcome::ok(if state.maintenance {
            "Maintenance mode is currently enabled\n"
        } else {
            "Maintenance mode is currently disabled\n"
        })
    }
}

fn app_toggle(command: &str, input: &Input, state: &mut State) -> Outcome {
    if input.arguments.iter().any(|app| app != "mail") {
        return Outcome {
            stdout: String::new(),
            stderr: "No such app enabled\n".into(),
            code: 1,
        };
    }
    state.mail_enabled = command == "app:enable";
    Outcome::ok(if state.mail_enabled {
        "mail 5.5.0 enabled\n"
    } else {
        "mail 5.5.0 disabled\n"
    })
}

fn user_add(input: &Input, inv: &Invocation<'_>, state: &mut State) -> Outcome {
    let uid = input.argument(0);
    if input.has("password-from-env") && (inv.env)("OC_PASS").is_none() {
        return Outcome {
            stdout: String::new(),
            stderr: "--password-from-env given, but OC_PASS is empty!\n".into(),
            code: 1,
        };
    }
    if state.users.iter().any(|u| u == uid) {
        return Outcome {
            stdout: String::new(),
            stderr: format!("The user \"{uid}\" already exists.\n"),
            code: 1,
        };
    }
    state.users.push(uid.to_owned());
    Outcome::ok(format!("The account \"{uid}\" was created successfully\n"))
}

/// `user:info <uid> [--output=json]`: core command, works in maintenance
/// mode too; an unknown user prints `user not found` and exits 1.
fn user_info(input: &Input, state: &State) -> Outcome {
    let uid = input.argument(0);
    if !state.users.iter().any(|u| u == uid) {
        return Outcome {
            stdout: "user not found\n".into(),
            stderr: String::new(),
            code: 1,
        };
    }
    if input.value("output") == Some("json") {
        Outcome::ok(
            json!({"user_id": uid, "display_name": uid, "enabled": true}).to_string() + "\n",
        )
    } else {
        Outcome::ok(format!(
            "  - user_id: {uid}\n  - display_name: {uid}\n  - enabled: true\n"
        ))
    }
}

/// PHP's `(int)` cast of a numeric-prefix string.
fn intval(s: &str) -> i64 {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    s[..end].parse().unwrap_or(0)
}

fn create(
    input: &Input,
    state: &State,
    accounts: &mut dyn AccountStore,
) -> Result<Outcome, StoreError> {
    let a = |i: usize| input.argument(i).to_owned();
    if !state.users.contains(&a(0)) {
        return Ok(Outcome {
            stdout: format!("User {} does not exist\n", a(0)),
            stderr: String::new(),
            code: 1,
        });
    }
    let id = accounts.insert(Account {
        id: 0,
        user_id: a(0),
        name: a(1),
        email: a(2),
        imap: Endpoint {
            host: a(3),
            port: intval(&a(4)),
            security: a(5),
            user: a(6),
            password: a(7),
        },
        smtp: Endpoint {
            host: a(8),
            port: intval(&a(9)),
            security: a(10),
            user: a(11),
            password: a(12),
        },
        auth_method: input
            .arguments
            .get(13)
            .cloned()
            .unwrap_or_else(|| "password".into()),
        provisioning_id: None,
    })?;
    Ok(Outcome::ok(format!("Account {id} for {} created\n", a(2))))
}

fn delete(input: &Input, accounts: &mut dyn AccountStore) -> Result<Outcome, StoreError> {
    let id = intval(input.argument(0));
    let Some(account) = accounts.find(id)? else {
        return Ok(Outcome {
            stdout: "This account does not exist\n".into(),
            stderr: String::new(),
            code: 1,
        });
    };
    let email = account.email;
    let mut stdout = format!("Found account with email: {email}\n");
    if account.provisioning_id.is_some() {
        stdout.push_str(
            "This is a provisioned account which can not be deleted from CLI. Use the Provisioning UI instead.\n",
        );
        return Ok(Outcome {
            stdout,
            stderr: String::new(),
            code: 2,
        });
    }
    accounts.delete(id)?;
    stdout.push_str(&format!("Deleting {email}\nDeleted account {id} \n"));
    Ok(Outcome::ok(stdout))
}

fn export(input: &Input, store: &mut dyn AccountStore) -> Result<Outcome, StoreError> {
    let user = input.argument(0);
    let output = input.value("output").unwrap_or("plain");
    let accounts = store.of_user(user)?;
    let endpoint = |e: &Endpoint| json!({"user": e.user, "host": e.host, "port": e.port, "security": e.security});
    let list: Vec<serde_json::Value> = accounts
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "email": a.email,
                "name": a.name,
                "provision": match a.provisioning_id {
                    Some(id) => json!({"status": "set", "id": id}),
                    None => json!({"status": "none", "id": "N/A"}),
                },
                "imap": endpoint(&a.imap),
                "smtp": endpoint(&a.smtp),
            })
        })
        .collect();
    Ok(match output {
        "json" => Outcome::ok(serde_json::Value::Array(list).to_string() + "\n"),
        "json_pretty" => Outcome::ok(
            serde_json::to_string_pretty(&serde_json::Value::Array(list)).unwrap_or_default()
                + "\n",
        ),
        _ => {
            let mut text = String::new();
            for a in accounts {
                text.push_str(&format!(
                    "Account {}:\n- E-Mail: {}\n- Name: {}\n- Provision: none ID: N/A\n- IMAP user: {}\n- IMAP host: {}:{}, security: {}\n- SMTP user: {}\n- SMTP host: {}:{}, security: {}\n",
                    a.id, a.email, a.name, a.imap.user, a.imap.host, a.imap.port, a.imap.security,
                    a.smtp.user, a.smtp.host, a.smtp.port, a.smtp.security
                ));
            }
            Outcome::ok(text)
        }
    })
}

fn update(input: &Input, accounts: &mut dyn AccountStore) -> Result<Outcome, StoreError> {
    let id = intval(input.argument(0));
    let Some(mut account) = accounts.find(id)? else {
        return Ok(Outcome {
            stdout: format!("No Email Account found with ID {id} \n"),
            stderr: String::new(),
            code: 1,
        });
    };
    for (key, value) in &input.options {
        let Some(value) = value.clone() else {
            continue;
        };
        match key.as_str() {
            "name" => account.name = value,
            "email" => account.email = value,
            "imap-host" => account.imap.host = value,
            "imap-port" => account.imap.port = intval(&value),
            "imap-ssl-mode" => account.imap.security = value,
            "imap-user" => account.imap.user = value,
            "imap-password" => account.imap.password = value,
            "smtp-host" => account.smtp.host = value,
            "smtp-port" => account.smtp.port = intval(&value),
            "smtp-ssl-mode" => account.smtp.security = value,
            "smtp-user" => account.smtp.user = value,
            "smtp-password" => account.smtp.password = value,
            "auth-method" => account.auth_method = value,
            _ => {}
        }
    }
    accounts.update(&account)?;
    Ok(Outcome::ok(format!(
        "Account {} with ID  {id}  successfully updated \n",
        account.email
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(state: &mut State, args: &[&str]) -> Outcome {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run(
            &Invocation {
                args: &args,
                uid: 33,
                config_owner: 33,
                env: &|_| None,
            },
            state,
        )
    }

    fn create_args(user: &str) -> Vec<&str> {
        vec![
            "mail:account:create",
            user,
            "Info",
            "info@x.org",
            "imap.x.org",
            "993",
            "ssl",
            "info@x.org",
            "secret",
            "smtp.x.org",
            "587",
            "tls",
            "info@x.org",
            "secret",
        ]
    }

    #[test]
    fn create_export_update_delete() {
        let mut s = State {
            users: vec!["alice".into()],
            ..State::default()
        };
        let out = call(&mut s, &create_args("alice"));
        assert_eq!(out.stdout, "Account 1 for info@x.org created\n");
        let again = call(&mut s, &create_args("alice"));
        assert_eq!(
            again.stdout, "Account 2 for info@x.org created\n",
            "not idempotent"
        );
        let export = call(&mut s, &["mail:account:export", "alice", "--output=json"]);
        let list: serde_json::Value = serde_json::from_str(&export.stdout).unwrap();
        assert_eq!(list[0]["imap"]["port"], 993);
        assert!(
            !export.stdout.contains("secret"),
            "passwords are never exported"
        );
        let upd = call(&mut s, &["mail:account:update", "1", "--imap-password=new"]);
        assert_eq!(upd.code, 0);
        assert_eq!(s.accounts[0].imap.password, "new");
        let del = call(&mut s, &["mail:account:delete", "1"]);
        assert_eq!(
            del.stdout,
            "Found account with email: info@x.org\nDeleting info@x.org\nDeleted account 1 \n"
        );
        let gone = call(&mut s, &["mail:account:delete", "1"]);
        assert_eq!(
            (gone.stdout.as_str(), gone.code),
            ("This account does not exist\n", 1)
        );
    }

    #[test]
    fn errors_match_the_real_occ() {
        let mut s = State::default();
        let out = call(&mut s, &create_args("nobody"));
        assert_eq!(
            (out.stdout.as_str(), out.code),
            ("User nobody does not exist\n", 1)
        );
        let out = call(&mut s, &["mail:account:create", "alice"]);
        assert!(
            out.stderr
                .contains("Not enough arguments (missing: \"name\""),
            "{out:?}"
        );
        call(&mut s, &["maintenance:mode", "--on"]);
        let out = call(&mut s, &["mail:account:export", "alice", "--output=json"]);
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.starts_with("Nextcloud is in maintenance mode"),
            "{out:?}"
        );
        call(&mut s, &["maintenance:mode", "--off"]);
        call(&mut s, &["app:disable", "mail"]);
        let out = call(&mut s, &["mail:account:export", "alice"]);
        assert!(
            out.stderr
                .contains("There are no commands defined in the \"mail:account\" namespace.")
        );
        let args: Vec<String> = vec!["mail:account:export".into(), "alice".into()];
        let out = run(
            &Invocation {
                args: &args,
                uid: 0,
                config_owner: 33,
                env: &|_| None,
            },
            &mut s,
        );
        assert!(out.stdout.starts_with(
            "Console has to be executed with the user that owns the file config/config.php"
        ));
        assert_eq!(out.code, 1);
        assert_eq!(intval("12abc"), 12);
        assert_eq!(intval("abc"), 0);
    }
}
