//! Ports of servers the kit does not build, read from the kernel rather than
//! guessed or offered until one binds, and a port that refuses every
//! connection.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::Child;

/// Starts a server that cannot be handed port 0 (MariaDB reads it as 3306)
/// on ports below the kernel's ephemeral range (where every port-0 listener
/// and outgoing connection gets its port) until it binds one. The server
/// exits when its port is taken, so the one that answers owns its port and
/// nothing relies on a port staying free.
///
/// `spawn` starts it on a port, `ready` asks whether it answers yet, and
/// `port_taken` tells from its log (`log`) that it exited for that reason;
/// any other exit fails the test with the log.
pub(crate) async fn start_on_offered_port(
    server: &str,
    mut spawn: impl FnMut(u16) -> Child,
    ready: impl AsyncFn(u16) -> bool,
    port_taken: impl Fn(&str) -> bool,
    log: impl Fn() -> String,
) -> (Child, u16) {
    for _ in 0..20 {
        let port = below_ephemeral_range();
        let mut child = spawn(port);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = log();
                assert!(port_taken(&log), "{server} exited ({status}): {log}");
                break; // Offer another.
            }
            if ready(port).await {
                return (child, port);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{server} did not start: {}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("{server} found no free port in 20 tries: {}", log());
}

/// A port below the kernel's ephemeral range (`ip_local_port_range`).
fn below_ephemeral_range() -> u16 {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    rand::rng().random_range(10_000..low.max(10_001))
}

/// The TCP ports process `pid` listens on, read from `/proc`: the inodes of
/// its socket descriptors, matched against the kernel's listening sockets.
/// For servers that bind port 0 and do not say which port they got.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        ports.extend(listening_in_table(&text, &inodes));
    }
    ports
}

/// The local ports of the `LISTEN` rows (state `0A`) of a `/proc/net/tcp`
/// table whose inode is one of `inodes`.
fn listening_in_table(text: &str, inodes: &[String]) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if *state != "0A" || !inodes.iter().any(|i| i == inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

/// The port memcached announced in `MEMCACHED_PORT_FILENAME` (started with
/// `-p -1`: a port of the kernel's choosing), once the file is there.
pub fn memcached_port(file: &Path) -> Option<u16> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TCP INET: "))
        .and_then(|p| p.trim().parse().ok())
}

/// A loopback port where nothing answers, for a peer that is down: a socket
/// bound to port 0 that never listens. It holds the port (nothing else can
/// bind it while this lives) and the kernel refuses every connection to it.
pub struct RefusedPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl RefusedPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("TCP socket");
        // Without SO_REUSEADDR no other socket can share the port.
        socket.set_reuseaddr(false).expect("SO_REUSEADDR off");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind port 0");
        let addr = socket.local_addr().expect("bound address");
        Self {
            _socket: socket,
            addr,
        }
    }

    /// `http://127.0.0.1:<port>`, e.g. for an agent URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_rows_are_found_by_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:8DED 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
   2: 0100007F:8DEE 0100007F:1F90 01 00000000:00000000 00:00000000 00000000   999        0 4243 1 0000000000000000 100 0 0 10 0
";
        let ours = vec!["4242".to_owned(), "4243".to_owned()];
        assert_eq!(listening_in_table(table, &ours), vec![0x8DED]);
    }

    #[tokio::test]
    async fn this_process_is_seen_listening_and_a_refused_port_refuses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id()).contains(&port));

        let refused = RefusedPort::new();
        assert!(!listening_ports(std::process::id()).contains(&refused.addr.port()));
        let error = tokio::net::TcpStream::connect(refused.addr)
            .await
            .expect_err("nothing listens");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
        // And nobody else can listen there while it is held.
        assert!(tokio::net::TcpListener::bind(refused.addr).await.is_err());
    }
}
