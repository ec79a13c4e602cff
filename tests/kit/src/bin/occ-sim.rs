//! `php occ …` stand-in (see `reconciler_testkit::occ_sim`). Installed in the
//! test container as `php`; `php occ <command> <args…>` is what it serves.
//! State: `$OCC_SIM_STATE` (default `/var/www/html/data/occ-sim.json`).
//!
//! - `OCC_SIM_BOOT_MS`: milliseconds spent before anything else, standing in
//!   for PHP booting Nextcloud (0.3–1.5 s a call on a real server); the file
//!   `data/occ-sim-boot-ms` overrides it, so a running container can change it.
//! - `OCC_SIM_DB_URL` (and `OCC_SIM_DB_TABLE_PREFIX`, default `oc_`): the Mail
//!   accounts live in that MariaDB's `<prefix>mail_accounts` table instead of
//!   the state file, as on a real Nextcloud.
//! - Every call appends its command name to `data/occ-sim-calls.log`.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Duration;

use reconciler_testkit::occ_sim::{Invocation, MariaDbAccounts, State, run, run_with, unhandled};

const BOOT_MS_FILE: &str = "/var/www/html/data/occ-sim-boot-ms";
const CALL_LOG: &str = "/var/www/html/data/occ-sim-calls.log";

/// The PHP boot this call pays for.
fn boot_time() -> Duration {
    let configured = std::fs::read_to_string(BOOT_MS_FILE)
        .ok()
        .or_else(|| std::env::var("OCC_SIM_BOOT_MS").ok());
    Duration::from_millis(
        configured
            .and_then(|ms| ms.trim().parse().ok())
            .unwrap_or(0),
    )
}

fn log_call(args: &[String]) {
    let command = args.first().map(String::as_str).unwrap_or("");
    let logged = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(CALL_LOG)
        .and_then(|mut f| writeln!(f, "{command}"));
    if let Err(e) = logged {
        eprintln!("occ-sim: {CALL_LOG}: {e}");
    }
}

fn effective_uid() -> u32 {
    // /proc/self/status: "Uid:\treal\teffective\tsaved\tfs".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `php occ …` (or `php /var/www/html/occ …`).
    if args
        .first()
        .is_some_and(|a| a == "occ" || a.ends_with("/occ"))
    {
        args.remove(0);
    } else {
        eprintln!("occ-sim: only `php occ …` is supported");
        return ExitCode::from(255);
    }
    // Several occ processes boot side by side, as PHP would.
    std::thread::sleep(boot_time());
    let config_owner = std::fs::metadata("config/config.php")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    let path =
        std::env::var("OCC_SIM_STATE").unwrap_or_else(|_| "/var/www/html/data/occ-sim.json".into());
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("occ-sim: {path}: {e}");
            return ExitCode::from(1);
        }
    };
    // One command at a time, like a database transaction would ensure.
    if let Err(e) = file.lock() {
        eprintln!("occ-sim: lock {path}: {e}");
        return ExitCode::from(1);
    }
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let mut state: State = if text.trim().is_empty() {
        State::default()
    } else {
        match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("occ-sim: {path} is corrupt: {e}");
                return ExitCode::from(1);
            }
        }
    };
    log_call(&args);
    let before = state.clone();
    let env = |k: &str| std::env::var(k).ok();
    let uid = effective_uid();
    let invocation = Invocation {
        args: &args,
        uid,
        config_owner,
        env: &env,
    };
    let database = std::env::var("OCC_SIM_DB_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let outcome = match database {
        // Nextcloud checks the config owner before it touches its database.
        Some(url) if uid == config_owner => {
            let prefix = std::env::var("OCC_SIM_DB_TABLE_PREFIX").unwrap_or_else(|_| "oc_".into());
            match MariaDbAccounts::connect(&url, &prefix) {
                Ok(mut accounts) => run_with(&invocation, &mut state, &mut accounts),
                Err(e) => unhandled(&e),
            }
        }
        _ => run(&invocation, &mut state),
    };
    if state != before {
        let text = serde_json::to_string_pretty(&state).expect("state serializes");
        let written = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!("occ-sim: writing {path}: {e}");
            return ExitCode::from(1);
        }
    }
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    ExitCode::from(outcome.code as u8)
}
