//! Telling whoever started the process which address each listener got.
//!
//! A listen address may name port 0 (`AGENT_LISTEN=127.0.0.1:0`): the kernel
//! then picks a free port, and only this process knows which. When
//! `LISTEN_ADDR_FILE` names a file, every listener appends one line to it as
//! soon as it is bound (connections are queued from then on):
//!
//! ```text
//! http 127.0.0.1:41234
//! grpc 127.0.0.1:40017
//! ```
//!
//! `<label> <address>`, one `write` per line, so a reader that keeps only
//! complete lines never sees half an address. The coordinator announces
//! `http` and `grpc`, each agent `grpc`. The test harness starts every binary
//! this way: no test relies on a port that was "free a moment ago".

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

/// The environment variable naming the file listeners announce themselves in.
pub const LISTEN_ADDR_FILE: &str = "LISTEN_ADDR_FILE";

/// Appends `<label> <addr>` to the file named by `LISTEN_ADDR_FILE`, if set.
pub fn announce(label: &str, addr: SocketAddr) -> io::Result<()> {
    match std::env::var_os(LISTEN_ADDR_FILE) {
        Some(path) if !path.is_empty() => announce_to(Path::new(&path), label, addr),
        _ => Ok(()),
    }
}

/// Appends `<label> <addr>` to `file`, creating it.
pub fn announce_to(file: &Path, label: &str, addr: SocketAddr) -> io::Result<()> {
    let line = format!("{label} {addr}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(line.as_bytes())
}

/// The announcements in `text`: complete lines only (a line still being
/// written has no newline yet), in the order they were written.
pub fn parse(text: &str) -> Vec<(String, SocketAddr)> {
    text.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n'))
        .filter_map(|line| {
            let (label, addr) = line.split_once(' ')?;
            Some((label.to_owned(), addr.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_read_back_in_order_and_only_when_complete() {
        let dir = std::env::temp_dir().join(format!("announce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("listen.addr");
        let _ = std::fs::remove_file(&file);
        announce_to(&file, "http", "127.0.0.1:41234".parse().unwrap()).unwrap();
        announce_to(&file, "grpc", "[::1]:40017".parse().unwrap()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, "http 127.0.0.1:41234\ngrpc [::1]:40017\n");
        assert_eq!(
            parse(&text),
            vec![
                ("http".to_owned(), "127.0.0.1:41234".parse().unwrap()),
                ("grpc".to_owned(), "[::1]:40017".parse().unwrap()),
            ]
        );
        // A line cut short (no newline yet) is not an announcement.
        assert_eq!(parse("http 127.0.0.1:41234\ngrpc 127.0.0.1:4").len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
