//! Certificates for mutual TLS between the coordinator and its agents:
//! made by the real `coordinator certs` command ([`CertDir::make`]), as an
//! operator makes them, plus what that command would never make (an
//! expired certificate, one for the wrong name), made here with rcgen.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use reconciler_runtime::tls::{self, ClientTransport};
use time::{Duration, OffsetDateTime};

use super::process::bin_dir;

/// A directory of certificates written by `coordinator certs`.
#[derive(Clone, Debug)]
pub struct CertDir {
    pub dir: PathBuf,
    /// Removes a temporary directory when the last clone is dropped.
    _temp: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl CertDir {
    /// [`Self::make`] in a new temporary directory.
    pub fn temporary(agents: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut certs = Self::make(temp.path(), agents);
        certs._temp = Some(std::sync::Arc::new(temp));
        certs
    }

    /// Runs `coordinator certs --out <dir> --agent <name>…` and panics with
    /// its output if it fails.
    pub fn make(dir: &Path, agents: &[&str]) -> Self {
        let mut command = std::process::Command::new(bin_dir().join("coordinator"));
        command.arg("certs").arg("--out").arg(dir);
        for agent in agents {
            command.args(["--agent", agent]);
        }
        let out = command.output().expect("run `coordinator certs`");
        assert!(
            out.status.success(),
            "coordinator certs failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_owned(),
            _temp: None,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    fn path(p: PathBuf) -> String {
        p.display().to_string()
    }

    /// The environment of the agent `name` serving with its certificate
    /// and accepting clients of this CA.
    pub fn agent_env(&self, name: &str) -> Vec<(String, String)> {
        vec![
            (tls::INSECURE.into(), "false".into()),
            (tls::AGENT_CERT.into(), Self::path(self.cert(name))),
            (tls::AGENT_KEY.into(), Self::path(self.key(name))),
            (tls::AGENT_CLIENT_CA.into(), Self::path(self.ca())),
        ]
    }

    /// The coordinator's environment: its client certificate, and this CA
    /// for the agents'.
    pub fn coordinator_env(&self) -> Vec<(String, String)> {
        vec![
            (tls::INSECURE.into(), "false".into()),
            (tls::COORDINATOR_CA.into(), Self::path(self.ca())),
            (
                tls::COORDINATOR_CERT.into(),
                Self::path(self.cert("coordinator")),
            ),
            (
                tls::COORDINATOR_KEY.into(),
                Self::path(self.key("coordinator")),
            ),
        ]
    }

    /// grpcurl's flags for an agent of this CA, presenting the
    /// coordinator's certificate (the README's `$TLS`).
    pub fn grpcurl_flags(&self) -> String {
        format!(
            "-cacert {} -cert {} -key {}",
            self.ca().display(),
            self.cert("coordinator").display(),
            self.key("coordinator").display()
        )
    }

    /// A client presenting `cert` and `key` and trusting this CA for the
    /// agent's certificate.
    pub fn client_with(&self, cert: &[u8], key: &[u8]) -> ClientTransport {
        ClientTransport::mutual_tls(&read(&self.ca()), cert, key)
    }

    /// A client presenting the certificate `name` of this directory.
    pub fn client(&self, name: &str) -> ClientTransport {
        self.client_with(&read(&self.cert(name)), &read(&self.key(name)))
    }

    /// This directory's CA as an rcgen issuer, for certificates the command
    /// would not make. `ca_name`: the CA's common name (the coordinator's
    /// `certs::CA_NAME`), which its certificates name as their issuer.
    pub fn issuer(&self, ca_name: &str) -> Issuer<'static, KeyPair> {
        let key =
            KeyPair::from_pem(&String::from_utf8_lossy(&read(&self.key("ca")))).expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, ca_name);
        Issuer::new(params, key)
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A client certificate for `name` signed by `issuer`, valid from
/// `not_before` to `not_after`: (certificate PEM, key PEM).
pub fn client_certificate(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (Vec<u8>, Vec<u8>) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
}

/// A client certificate for `name` signed by `issuer`, valid from an hour
/// ago for a day.
pub fn current_client_certificate(issuer: &Issuer<'_, KeyPair>, name: &str) -> (Vec<u8>, Vec<u8>) {
    let now = OffsetDateTime::now_utc();
    client_certificate(
        issuer,
        name,
        now - Duration::hours(1),
        now + Duration::days(1),
    )
}

/// The coordinator's name, signed by `issuer`, expired a day ago.
pub fn expired_client_certificate(issuer: &Issuer<'_, KeyPair>) -> (Vec<u8>, Vec<u8>) {
    let now = OffsetDateTime::now_utc();
    client_certificate(
        issuer,
        "coordinator",
        now - Duration::days(30),
        now - Duration::days(1),
    )
}
