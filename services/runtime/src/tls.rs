//! Mutual TLS between the coordinator and its agents (README "Mutual TLS").
//!
//! An agent serves gRPC over TLS and accepts only a client whose certificate
//! chains to `AGENT_TLS_CLIENT_CA_FILE` (and, with `AGENT_TLS_CLIENT_NAME`,
//! carries that name): a token leaked from one host no longer opens every
//! agent, because a caller also needs a key the CA signed. The coordinator
//! presents `COORDINATOR_TLS_CERT_FILE`/`_KEY_FILE` and verifies agents
//! against `AGENT_TLS_CA_FILE`. The bearer token stays a second factor.
//!
//! Plaintext HTTP/2 is only served or spoken with `AGENT_INSECURE=true`;
//! without TLS settings and without it, the process refuses to start.
//!
//! The coordinator's own gRPC port (operators, with the admin token) serves
//! TLS without asking for a client certificate when `GRPC_TLS_CERT_FILE`
//! and `GRPC_TLS_KEY_FILE` are set ([`ServerTransport::operator_from_lookup`]):
//! the token then never crosses the network in the clear.
//!
//! Agents run the TLS handshake themselves (tokio-rustls, not tonic's
//! `tls_config`) for two reasons: rustls checks the client's name inside
//! the handshake, so a wrong certificate never reaches a service; and the
//! handshake runs under the listener's deadline ([`crate::listen`]). Every
//! TLS session uses the ring provider, like the rest of the process.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, warn};

use crate::listen::{Establish, LimitedListener, LimitedStream};

/// `AGENT_INSECURE`: plaintext HTTP/2, on either side.
pub const INSECURE: &str = "AGENT_INSECURE";
pub const AGENT_CERT: &str = "AGENT_TLS_CERT_FILE";
pub const AGENT_KEY: &str = "AGENT_TLS_KEY_FILE";
pub const AGENT_CLIENT_CA: &str = "AGENT_TLS_CLIENT_CA_FILE";
pub const AGENT_CLIENT_NAME: &str = "AGENT_TLS_CLIENT_NAME";
pub const COORDINATOR_CA: &str = "AGENT_TLS_CA_FILE";
pub const COORDINATOR_CERT: &str = "COORDINATOR_TLS_CERT_FILE";
pub const COORDINATOR_KEY: &str = "COORDINATOR_TLS_KEY_FILE";
/// The coordinator's operator port: its certificate and key.
pub const OPERATOR_CERT: &str = "GRPC_TLS_CERT_FILE";
pub const OPERATOR_KEY: &str = "GRPC_TLS_KEY_FILE";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "gRPC between the coordinator and the agents is mutual TLS: set {} \
         (`coordinator certs` makes the files; README \"Mutual TLS\"), or {INSECURE}=true \
         for plaintext HTTP/2 on a network you trust",
        .0.join(", ")
    )]
    Missing(Vec<&'static str>),
    #[error(
        "{set} is set but {missing} is not: the coordinator's gRPC port serves TLS with both \
         (or plaintext with neither)"
    )]
    Half {
        set: &'static str,
        missing: &'static str,
    },
    #[error("{INSECURE}=true and {0} are both set: choose TLS or plaintext")]
    Both(String),
    #[error("{INSECURE}: expected true or false, got `{0}`")]
    Flag(String),
    #[error("{var} `{path}`: {reason}")]
    File {
        var: &'static str,
        path: String,
        reason: String,
    },
    #[error("{AGENT_CLIENT_NAME} `{0}` is not a DNS name or IP address")]
    Name(String),
    #[error("{var} `{url}`: {reason}")]
    Url {
        var: String,
        url: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// `AGENT_INSECURE` (unset is false).
pub fn insecure(lookup: &impl Fn(&str) -> Option<String>) -> Result<bool, TlsError> {
    match lookup(INSECURE).as_deref().map(str::trim) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(TlsError::Flag(other.to_owned())),
    }
}

/// The paths of `vars` when all are set, `None` when none is, and an error
/// naming the missing ones otherwise (or any with `AGENT_INSECURE=true`).
fn files<const N: usize>(
    lookup: &impl Fn(&str) -> Option<String>,
    vars: [&'static str; N],
) -> Result<Option<[String; N]>, TlsError> {
    let values = vars.map(lookup);
    let insecure = insecure(lookup)?;
    let set: Vec<&str> = vars
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| *k)
        .collect();
    if insecure {
        return match set.is_empty() {
            true => Ok(None),
            false => Err(TlsError::Both(set.join(", "))),
        };
    }
    let missing: Vec<&'static str> = vars
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        return Err(TlsError::Missing(missing));
    }
    Ok(Some(values.map(Option::unwrap_or_default)))
}

/// A PEM file named by `var`, read once: parsed to check it, and its bytes
/// handed on as they are.
struct PemFile {
    var: &'static str,
    path: String,
    bytes: Vec<u8>,
}

impl PemFile {
    fn read(var: &'static str, path: &str) -> Result<Self, TlsError> {
        let bytes = std::fs::read(path).map_err(|e| TlsError::File {
            var,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            var,
            path: path.to_owned(),
            bytes,
        })
    }

    fn error(&self, reason: String) -> TlsError {
        TlsError::File {
            var: self.var,
            path: self.path.clone(),
            reason,
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(self.error("no PEM certificate in it".into()));
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        // The key's bytes never appear in an error: only the file's name.
        PrivateKeyDer::from_pem_slice(&self.bytes)
            .map_err(|e| self.error(format!("no PEM private key in it ({e})")))
    }
}

/// The one crypto provider (ring) every TLS configuration here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    Arc::clone(&PROVIDER)
}

/// How a gRPC listener is reached.
#[derive(Clone)]
pub enum ServerTransport {
    /// TLS, with a client certificate required (an agent).
    MutualTls(Arc<rustls::ServerConfig>),
    /// TLS, no client certificate asked for: the caller proves itself with
    /// its token (the coordinator's operator port).
    Tls(Arc<rustls::ServerConfig>),
    /// Plaintext HTTP/2 (`AGENT_INSECURE=true`; the coordinator's operator
    /// port without `GRPC_TLS_*`).
    Insecure,
}

impl std::fmt::Debug for ServerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode())
    }
}

impl ServerTransport {
    /// From `AGENT_TLS_CERT_FILE`, `AGENT_TLS_KEY_FILE`,
    /// `AGENT_TLS_CLIENT_CA_FILE` and `AGENT_TLS_CLIENT_NAME`, or
    /// `AGENT_INSECURE=true`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TlsError> {
        let Some([cert, key, ca_file]) = files(&lookup, [AGENT_CERT, AGENT_KEY, AGENT_CLIENT_CA])?
        else {
            return Ok(Self::Insecure);
        };
        let mut roots = RootCertStore::empty();
        let ca_file = PemFile::read(AGENT_CLIENT_CA, &ca_file)?;
        for ca in ca_file.certificates()? {
            roots.add(ca).map_err(|e| ca_file.error(e.to_string()))?;
        }
        let client_name = lookup(AGENT_CLIENT_NAME)
            .map(|name| ServerName::try_from(name.clone()).map_err(|_| TlsError::Name(name)))
            .transpose()?;
        Self::mutual_tls(
            PemFile::read(AGENT_CERT, &cert)?.certificates()?,
            PemFile::read(AGENT_KEY, &key)?.private_key()?,
            roots,
            client_name,
        )
    }

    /// [`Self::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self, TlsError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// The coordinator's operator port: TLS from `GRPC_TLS_CERT_FILE` and
    /// `GRPC_TLS_KEY_FILE` (both, or neither for plaintext).
    pub fn operator_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TlsError> {
        match (lookup(OPERATOR_CERT), lookup(OPERATOR_KEY)) {
            (None, None) => Ok(Self::Insecure),
            (Some(_), None) => Err(TlsError::Half {
                set: OPERATOR_CERT,
                missing: OPERATOR_KEY,
            }),
            (None, Some(_)) => Err(TlsError::Half {
                set: OPERATOR_KEY,
                missing: OPERATOR_CERT,
            }),
            (Some(cert), Some(key)) => Self::server_tls(
                PemFile::read(OPERATOR_CERT, &cert)?.certificates()?,
                PemFile::read(OPERATOR_KEY, &key)?.private_key()?,
            )
            .map_err(|e| match e {
                // A key that is not the certificate's, say: name both files.
                TlsError::Setup(why) => TlsError::Setup(format!(
                    "{OPERATOR_CERT} `{cert}` with {OPERATOR_KEY} `{key}`: {why}"
                )),
                other => other,
            }),
        }
    }

    /// Presents `chain`; asks the client for no certificate.
    pub fn server_tls(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let config = server_builder()?.with_no_client_auth();
        Ok(Self::Tls(presenting(config, chain, key)?))
    }

    /// Presents `chain` and requires a client certificate chaining to
    /// `client_roots` (and valid for `client_name`, when given).
    pub fn mutual_tls(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_roots: RootCertStore,
        client_name: Option<ServerName<'static>>,
    ) -> Result<Self, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(client_roots.into(), provider())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let verifier: Arc<dyn ClientCertVerifier> = match client_name {
            Some(name) => Arc::new(NamedClient {
                inner: verifier,
                name,
            }),
            None => verifier,
        };
        let config = server_builder()?.with_client_cert_verifier(verifier);
        Ok(Self::MutualTls(presenting(config, chain, key)?))
    }

    /// `mtls`, `tls` or `insecure`, for logs and health.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::MutualTls(_) => "mtls",
            Self::Tls(_) => "tls",
            Self::Insecure => "insecure",
        }
    }

    /// What makes a connection established under the listener's handshake
    /// deadline: the HTTP/2 preface in plaintext; under TLS the raw bytes
    /// are a ClientHello, so the completed handshake does ([`Self::incoming`]).
    pub(crate) fn establish(&self) -> Establish {
        match self {
            Self::MutualTls(_) | Self::Tls(_) => Establish::ByServer,
            Self::Insecure => Establish::Http2Preface,
        }
    }

    /// The listener's connections, through the TLS handshake when there is
    /// one. Handshakes run side by side (one slow peer delays no other);
    /// a refused one is logged and dropped, never handed to the server.
    pub(crate) fn incoming(
        self,
        listener: LimitedListener,
    ) -> BoxStream<'static, Result<Connection, io::Error>> {
        match self {
            Self::Insecure => listener.into_incoming().map_ok(Connection::Plain).boxed(),
            Self::MutualTls(config) | Self::Tls(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let deadline = listener.limits().handshake_timeout;
                // The listener's cap already bounds handshakes; one slot more
                // keeps `accept` running at the cap, which is where it evicts
                // the oldest stalled handshake for a new connection.
                let parallel = listener.limits().max_connections.saturating_add(1);
                listener
                    .into_incoming()
                    .map(move |accepted| handshake(acceptor.clone(), accepted, deadline))
                    .buffer_unordered(parallel)
                    .filter_map(std::future::ready)
                    .boxed()
            }
        }
    }
}

/// A server configuration on the one provider, with rustls's safe protocol
/// versions.
fn server_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, TlsError> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// `config` presenting `chain`, speaking HTTP/2 only.
fn presenting(
    config: rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = config
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    // gRPC clients insist on HTTP/2 being negotiated.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    accepted: io::Result<LimitedStream>,
    deadline: Duration,
) -> Option<io::Result<Connection>> {
    let stream = match accepted {
        Ok(stream) => stream,
        Err(e) => return Some(Err(e)),
    };
    let peer = stream.peer_addr().ok();
    let handle = stream.handle();
    // The stream's own deadline fails its reads; this bounds a handshake
    // stuck writing, too.
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            handle.establish();
            Some(Ok(Connection::Tls(Box::new(tls))))
        }
        Ok(Err(error)) => {
            // A certificate problem is worth an operator's eye; a peer that
            // just hung up (a port scan, a health probe) is not.
            let refused = error
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>());
            if refused {
                warn!(?peer, %error, "TLS handshake refused");
            } else {
                debug!(?peer, %error, "TLS handshake failed");
            }
            None
        }
        Err(_) => {
            debug!(?peer, "TLS handshake not completed in time");
            None
        }
    }
}

/// WebPKI client verification, plus a name the end-entity certificate must
/// be valid for (`AGENT_TLS_CLIENT_NAME`): checked in the handshake, so a
/// certificate for another service of the same CA is refused there.
#[derive(Debug)]
struct NamedClient {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
}

impl ClientCertVerifier for NamedClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, &self.name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A served connection: plaintext or TLS over a [`LimitedStream`].
pub enum Connection {
    Plain(LimitedStream),
    Tls(Box<tokio_rustls::server::TlsStream<LimitedStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Self::Plain(s) => s.connect_info(),
            Self::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

/// How the coordinator (or an operator's tool) reaches agents.
#[derive(Clone)]
pub enum ClientTransport {
    /// Verifies the agent against `ca` and presents `identity`.
    MutualTls { ca: Certificate, identity: Identity },
    /// Plaintext HTTP/2 (`AGENT_INSECURE=true`).
    Insecure,
}

impl std::fmt::Debug for ClientTransport {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode())
    }
}

impl ClientTransport {
    /// The coordinator's: `AGENT_TLS_CA_FILE`, `COORDINATOR_TLS_CERT_FILE`
    /// and `COORDINATOR_TLS_KEY_FILE`, or `AGENT_INSECURE=true`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TlsError> {
        let Some([ca, cert, key]) =
            files(&lookup, [COORDINATOR_CA, COORDINATOR_CERT, COORDINATOR_KEY])?
        else {
            return Ok(Self::Insecure);
        };
        let (ca, cert, key) = (
            PemFile::read(COORDINATOR_CA, &ca)?,
            PemFile::read(COORDINATOR_CERT, &cert)?,
            PemFile::read(COORDINATOR_KEY, &key)?,
        );
        // Parsed here so that a bad file stops the start, not the first call.
        ca.certificates()?;
        cert.certificates()?;
        key.private_key()?;
        Ok(Self::mutual_tls(&ca.bytes, &cert.bytes, &key.bytes))
    }

    /// From PEM text: the CA agents' certificates chain to, and the
    /// client's certificate and key.
    pub fn mutual_tls(ca: &[u8], cert: &[u8], key: &[u8]) -> Self {
        Self::MutualTls {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        }
    }

    /// `mtls` or `insecure`, for logs and health.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::MutualTls { .. } => "mtls",
            Self::Insecure => "insecure",
        }
    }

    /// Whether `url` (the value of `var`) fits this transport: `https://`
    /// for mutual TLS, `http://` for plaintext.
    pub fn check_url(&self, var: &str, url: &str) -> Result<(), TlsError> {
        let (scheme, why) = match self {
            Self::MutualTls { .. } => ("https://", "agents are reached over mutual TLS"),
            Self::Insecure => ("http://", "AGENT_INSECURE=true speaks plaintext HTTP/2"),
        };
        match url.starts_with(scheme) {
            true => Ok(()),
            false => Err(TlsError::Url {
                var: var.to_owned(),
                url: url.to_owned(),
                reason: format!("{why}: the URL starts with {scheme}"),
            }),
        }
    }

    /// A tonic endpoint for `url` with this transport's TLS settings. The
    /// agent's certificate must be valid for the URL's host.
    pub fn endpoint(&self, var: &str, url: &str) -> Result<Endpoint, TlsError> {
        self.check_url(var, url)?;
        let bad = |reason: String| TlsError::Url {
            var: var.to_owned(),
            url: url.to_owned(),
            reason,
        };
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| bad(e.to_string()))?;
        match self {
            Self::Insecure => Ok(endpoint),
            Self::MutualTls { ca, identity } => endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(ca.clone())
                        .identity(identity.clone()),
                )
                .map_err(|e| bad(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup<'a>(env: &'a HashMap<&'a str, &'a str>) -> impl Fn(&str) -> Option<String> + 'a {
        |k| env.get(k).map(|v| v.to_string())
    }

    #[test]
    fn without_tls_or_insecure_nothing_starts_and_the_error_says_what_to_set() {
        let env = HashMap::new();
        let err = ServerTransport::from_lookup(lookup(&env)).unwrap_err();
        let text = err.to_string();
        for var in [AGENT_CERT, AGENT_KEY, AGENT_CLIENT_CA, INSECURE] {
            assert!(text.contains(var), "{text}");
        }
        let err = ClientTransport::from_lookup(lookup(&env)).unwrap_err();
        let text = err.to_string();
        for var in [COORDINATOR_CA, COORDINATOR_CERT, COORDINATOR_KEY, INSECURE] {
            assert!(text.contains(var), "{text}");
        }

        let env = HashMap::from([(AGENT_CERT, "/x.pem")]);
        let text = ServerTransport::from_lookup(lookup(&env))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(AGENT_KEY) && !text.contains(AGENT_CERT),
            "{text}"
        );
    }

    #[test]
    fn insecure_is_explicit_and_exclusive() {
        let env = HashMap::from([(INSECURE, "true")]);
        assert_eq!(
            ServerTransport::from_lookup(lookup(&env)).unwrap().mode(),
            "insecure"
        );
        let client = ClientTransport::from_lookup(lookup(&env)).unwrap();
        assert_eq!(client.mode(), "insecure");
        assert!(client.check_url("X_URL", "http://a:1").is_ok());
        let err = client.check_url("X_URL", "https://a:1").unwrap_err();
        assert!(err.to_string().contains("X_URL"), "{err}");

        let env = HashMap::from([(INSECURE, "true"), (AGENT_CERT, "/x.pem")]);
        let err = ServerTransport::from_lookup(lookup(&env)).unwrap_err();
        assert!(matches!(err, TlsError::Both(_)), "{err}");
        let env = HashMap::from([(INSECURE, "yes")]);
        assert!(matches!(
            ServerTransport::from_lookup(lookup(&env)).unwrap_err(),
            TlsError::Flag(_)
        ));
    }

    #[test]
    fn the_operator_port_is_tls_with_both_files_plaintext_with_neither() {
        let env = HashMap::new();
        assert_eq!(
            ServerTransport::operator_from_lookup(lookup(&env))
                .unwrap()
                .mode(),
            "insecure"
        );
        // AGENT_INSECURE is about agents; it neither asks for nor forbids
        // TLS here.
        let env = HashMap::from([(INSECURE, "true")]);
        assert!(ServerTransport::operator_from_lookup(lookup(&env)).is_ok());

        for (set, missing) in [(OPERATOR_CERT, OPERATOR_KEY), (OPERATOR_KEY, OPERATOR_CERT)] {
            let env = HashMap::from([(set, "/x.pem")]);
            let err = ServerTransport::operator_from_lookup(lookup(&env)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{missing} is not")), "{text}");
        }

        let env = HashMap::from([
            (OPERATOR_CERT, "/nonexistent/grpc.pem"),
            (OPERATOR_KEY, "/nonexistent/grpc-key.pem"),
        ]);
        let err = ServerTransport::operator_from_lookup(lookup(&env)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(OPERATOR_CERT) && text.contains("/nonexistent/grpc.pem"),
            "{text}"
        );
    }

    #[test]
    fn unreadable_files_are_named() {
        let env = HashMap::from([
            (AGENT_CERT, "/nonexistent/agent.pem"),
            (AGENT_KEY, "/nonexistent/agent-key.pem"),
            (AGENT_CLIENT_CA, "/nonexistent/ca.pem"),
        ]);
        let err = ServerTransport::from_lookup(lookup(&env)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/"), "{err}");
    }
}
