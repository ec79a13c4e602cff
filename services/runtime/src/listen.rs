//! Listeners that idle connections cannot exhaust.
//!
//! Without limits, a peer that opens connections and never finishes a
//! request holds one file descriptor each, forever; about a thousand of them
//! reach the default `RLIMIT_NOFILE` and `accept` fails for everyone. Three
//! rules prevent that, for the HTTP and every gRPC listener alike:
//!
//! - **A cap** ([`ConnectionLimits::max_connections`]) on connections held at
//!   once, well below the unit's `LimitNOFILE`, so `accept` never fails for
//!   lack of descriptors.
//! - **A handshake deadline** ([`ConnectionLimits::handshake_timeout`]): a
//!   connection must become *established* within it or is closed. HTTP/1: the
//!   server marks it when a complete request head has arrived (and hyper's
//!   header-read timeout covers every later head, which is also the
//!   keep-alive idle timeout). HTTP/2 (gRPC): once the 24-byte client
//!   connection preface has been read; from then on HTTP/2 keep-alive pings
//!   find dead peers. gRPC over TLS: once the TLS handshake has completed
//!   (the server marks it: [`crate::tls`]).
//! - **Eviction**: when a new connection arrives at the cap, the oldest
//!   connection that is not yet established is closed to make room, so idle
//!   connections above the cap cannot keep a real request waiting. Only when
//!   every held connection is established does `accept` wait for one to end
//!   (pending connections then wait in the kernel's backlog, costing no
//!   descriptor).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, warn};

/// The HTTP/2 client connection preface (RFC 9113 §3.4) is this long.
const HTTP2_PREFACE_LEN: usize = 24;

/// Per-listener connection limits, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a new connection has to become established (see the module
    /// docs); for HTTP/1 also how long a kept-alive connection may sit idle.
    pub handshake_timeout: Duration,
    /// HTTP/2 keep-alive: a PING this often on an otherwise quiet connection
    /// (`None` for HTTP/1-only listeners).
    pub keepalive_interval: Option<Duration>,
    /// HTTP/2 keep-alive: the connection is closed when a PING is not
    /// acknowledged within this.
    pub keepalive_timeout: Option<Duration>,
}

impl ConnectionLimits {
    /// The coordinator's HTTP listener: `HTTP_MAX_CONNECTIONS` (default 512)
    /// and `HTTP_HEADER_TIMEOUT_SECONDS` (default 10).
    pub fn http_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        Ok(Self {
            max_connections: positive(&lookup, "HTTP_MAX_CONNECTIONS", 512)? as usize,
            handshake_timeout: seconds(&lookup, "HTTP_HEADER_TIMEOUT_SECONDS", 10)?,
            keepalive_interval: None,
            keepalive_timeout: None,
        })
    }

    /// A gRPC listener: `GRPC_MAX_CONNECTIONS` (default 512),
    /// `GRPC_HANDSHAKE_TIMEOUT_SECONDS` (10), `GRPC_KEEPALIVE_INTERVAL_SECONDS`
    /// (60) and `GRPC_KEEPALIVE_TIMEOUT_SECONDS` (20).
    pub fn grpc_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        Ok(Self {
            max_connections: positive(&lookup, "GRPC_MAX_CONNECTIONS", 512)? as usize,
            handshake_timeout: seconds(&lookup, "GRPC_HANDSHAKE_TIMEOUT_SECONDS", 10)?,
            keepalive_interval: Some(seconds(&lookup, "GRPC_KEEPALIVE_INTERVAL_SECONDS", 60)?),
            keepalive_timeout: Some(seconds(&lookup, "GRPC_KEEPALIVE_TIMEOUT_SECONDS", 20)?),
        })
    }

    /// [`Self::grpc_from_lookup`] over the process environment.
    pub fn grpc_from_env() -> Result<Self, String> {
        Self::grpc_from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }
}

fn positive(
    lookup: impl Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<u64, String> {
    let Some(raw) = lookup(key) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        Ok(_) => Err(format!("{key}: must be at least 1")),
        Err(e) => Err(format!("{key}: {e}")),
    }
}

fn seconds(
    lookup: impl Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<Duration, String> {
    positive(lookup, key, default).map(Duration::from_secs)
}

/// What makes a connection established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Establish {
    /// The server calls [`ConnectionHandle::establish`] once a request head
    /// is complete (HTTP/1) or the TLS handshake is (gRPC over TLS).
    ByServer,
    /// The HTTP/2 client preface has been read (gRPC).
    Http2Preface,
}

/// One held connection, as the listener sees it.
struct Entry {
    established: Arc<AtomicBool>,
    evict: CancellationToken,
}

type Registry = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// A TCP listener that enforces [`ConnectionLimits`]; see the module docs.
pub struct LimitedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    establish: Establish,
    permits: Arc<Semaphore>,
    held: Registry,
    next_id: u64,
}

impl LimitedListener {
    pub async fn bind(
        addr: SocketAddr,
        limits: ConnectionLimits,
        establish: Establish,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            establish,
            held: Arc::default(),
            next_id: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// The next connection, holding a place under the cap. Accept errors
    /// (e.g. a peer that reset before we got to it) are logged and skipped.
    pub async fn accept(&mut self) -> LimitedStream {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.evict_oldest_unestablished();
                    // Only a closed semaphore fails, and this one is never
                    // closed; were it, refusing the connection is safe.
                    let Ok(permit) = self.permits.clone().acquire_owned().await else {
                        warn!(%peer, "connection refused: the connection cap is closed");
                        continue;
                    };
                    permit
                }
            };
            let _ = stream.set_nodelay(true);
            debug!(%peer, "connection accepted");
            return self.hold(stream, permit);
        }
    }

    /// Closes the oldest connection still in its handshake, if any; its
    /// place frees as soon as its task notices.
    fn evict_oldest_unestablished(&self) {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let victim = held
            .values()
            .find(|e| !e.established.load(Ordering::Acquire) && !e.evict.is_cancelled());
        match victim {
            Some(entry) => {
                debug!("at the connection cap: closing the oldest unestablished connection");
                entry.evict.cancel();
            }
            None => warn!(
                max = self.limits.max_connections,
                "at the connection cap with every connection established: new connections wait"
            ),
        }
    }

    fn hold(&mut self, stream: TcpStream, permit: OwnedSemaphorePermit) -> LimitedStream {
        let id = self.next_id;
        self.next_id += 1;
        let established = Arc::new(AtomicBool::new(false));
        let evict = CancellationToken::new();
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Entry {
                    established: established.clone(),
                    evict: evict.clone(),
                },
            );
        LimitedStream {
            inner: stream,
            rule: self.establish,
            preface_read: 0,
            established,
            deadline: Some(Box::pin(tokio::time::sleep(self.limits.handshake_timeout))),
            evicted: Box::pin(evict.cancelled_owned()),
            _place: Place {
                id,
                held: self.held.clone(),
                _permit: permit,
            },
        }
    }

    /// The listener as a stream, for `tonic`'s `serve_with_incoming`.
    pub fn into_incoming(
        self,
    ) -> impl futures::Stream<Item = Result<LimitedStream, io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut listener| async move {
            let stream = listener.accept().await;
            Some((Ok(stream), listener))
        })
    }
}

/// A connection's place under the cap; given back on drop.
struct Place {
    id: u64,
    held: Registry,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Lets the server mark its connection established ([`Establish::ByServer`]).
#[derive(Clone, Debug)]
pub struct ConnectionHandle(Arc<AtomicBool>);

impl ConnectionHandle {
    pub fn establish(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A held connection. Reads fail (and the server closes it) when the
/// handshake deadline passes before it is established, or when it is evicted.
pub struct LimitedStream {
    inner: TcpStream,
    rule: Establish,
    preface_read: usize,
    established: Arc<AtomicBool>,
    /// `None` once established.
    deadline: Option<Pin<Box<Sleep>>>,
    evicted: Pin<Box<WaitForCancellationFutureOwned>>,
    _place: Place,
}

impl LimitedStream {
    pub fn handle(&self) -> ConnectionHandle {
        ConnectionHandle(self.established.clone())
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    fn is_established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    /// Why this connection must close now, if it must.
    fn check_limits(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.evicted.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room under the connection cap",
            ));
        }
        if self.is_established() {
            self.deadline = None;
        }
        if let Some(deadline) = self.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake not completed in time",
            ));
        }
        None
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.check_limits(cx) {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.rule == Establish::Http2Preface && !this.is_established() {
            this.preface_read += buf.filled().len() - before;
            if this.preface_read >= HTTP2_PREFACE_LEN {
                this.established.store(true, Ordering::Release);
                this.deadline = None;
            }
        }
        result
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(max: usize, timeout: Duration) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            handshake_timeout: timeout,
            keepalive_interval: None,
            keepalive_timeout: None,
        }
    }

    #[test]
    fn limits_from_the_environment() {
        let env: HashMap<&str, &str> = HashMap::new();
        let http =
            ConnectionLimits::http_from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(http.max_connections, 512);
        assert_eq!(http.handshake_timeout, Duration::from_secs(10));
        let env = HashMap::from([
            ("GRPC_MAX_CONNECTIONS", "32"),
            ("GRPC_KEEPALIVE_TIMEOUT_SECONDS", "5"),
        ]);
        let grpc =
            ConnectionLimits::grpc_from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(grpc.max_connections, 32);
        assert_eq!(grpc.keepalive_timeout, Some(Duration::from_secs(5)));
        let env = HashMap::from([("HTTP_MAX_CONNECTIONS", "0")]);
        let err =
            ConnectionLimits::http_from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(err.contains("HTTP_MAX_CONNECTIONS"), "{err}");
    }

    /// Reads one byte from each accepted connection until it fails; returns
    /// how each ended.
    async fn drain(mut stream: LimitedStream) -> io::ErrorKind {
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte).await {
                Ok(0) => return io::ErrorKind::UnexpectedEof,
                Ok(_) => {}
                Err(e) => return e.kind(),
            }
        }
    }

    #[tokio::test]
    async fn an_unestablished_connection_is_closed_at_the_deadline() {
        let mut listener = LimitedListener::bind(
            "127.0.0.1:0".parse().unwrap(),
            limits(4, Duration::from_millis(200)),
            Establish::Http2Preface,
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"PRI * HTTP").await.unwrap();
        let server = listener.accept().await;
        let started = tokio::time::Instant::now();
        assert_eq!(drain(server).await, io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_preface_establishes_and_disarms_the_deadline() {
        let mut listener = LimitedListener::bind(
            "127.0.0.1:0".parse().unwrap(),
            limits(4, Duration::from_millis(100)),
            Establish::Http2Preface,
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut server = listener.accept().await;
        let mut buf = [0u8; 24];
        server.read_exact(&mut buf).await.unwrap();
        // Well past the deadline, the connection still carries data.
        let late = tokio::time::timeout(Duration::from_millis(300), server.read(&mut buf)).await;
        assert!(late.is_err(), "no error, no data: still open ({late:?})");
        client.write_all(b"x").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_unestablished_connection_makes_room() {
        let mut listener = LimitedListener::bind(
            "127.0.0.1:0".parse().unwrap(),
            limits(2, Duration::from_secs(60)),
            Establish::ByServer,
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let first = listener.accept().await;
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let second = listener.accept().await;
        second.handle().establish();
        let first_task = tokio::spawn(drain(first));
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("a place was made for the third connection");
        assert_eq!(first_task.await.unwrap(), io::ErrorKind::ConnectionAborted);
        drop((second, third));
    }
}
