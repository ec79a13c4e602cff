//! `php occ …` stand-in (see `reconciler_testkit::occ_sim`). Installed in the
//! test container as `php`; `php occ <command> <args…>` is what it serves.
//! State: `$OCC_SIM_STATE` (default `/var/www/html/data/occ-sim.json`).

use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use reconciler_testkit::occ_sim::{Invocation, State, run};

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
    let before = state.clone();
    let env = |k: &str| std::env::var(k).ok();
    let outcome = run(
        &Invocation {
            args: &args,
            uid: effective_uid(),
            config_owner,
            env: &env,
        },
        &mut state,
    );
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
