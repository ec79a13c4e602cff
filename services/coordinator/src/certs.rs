//! `coordinator certs`: a private CA and the certificates for mutual TLS
//! between the coordinator and its agents (README "Mutual TLS").
//!
//! ```sh
//! coordinator certs --out /etc/reconciler/tls --agent mailcow-agent=mail.example.com \
//!     --agent sogo-agent [--days 825] [--force]
//! ```
//!
//! In `--out`: `ca.pem` and `ca-key.pem` (the CA), `coordinator.pem` and
//! `coordinator-key.pem` (the coordinator's client certificate), and
//! `<agent>.pem`, `<agent>-key.pem` per agent (a server certificate for the
//! agent's name, `localhost`, `127.0.0.1` and the names given after `=`).
//! Keys are written mode 0600. An existing key is never replaced without
//! `--force`: its certificate is kept, and a CA whose key exists signs the
//! new certificates, so agents can be added later.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use time::{Duration, OffsetDateTime};

/// The CA's subject: a reused CA key is matched to `ca.pem` by it.
pub const CA_NAME: &str = "authentik-reconciler private CA";
/// The CA outlives the certificates it signs by default, so that adding an
/// agent later does not mean replacing every certificate.
const CA_MIN_DAYS: u32 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Rcgen { what: String, source: rcgen::Error },
}

/// `NAME[=SAN,SAN…]`: an agent and the extra names (DNS names or IP
/// addresses) its certificate is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentSpec {
    pub name: String,
    pub extra_names: Vec<String>,
}

impl FromStr for AgentSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, extra) = s.split_once('=').unwrap_or((s, ""));
        let name = name.trim();
        check_name(name)?;
        let extra_names = extra
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            name: name.to_owned(),
            extra_names,
        })
    }
}

/// A name is also a file name here: letters, digits, `-` and `.` only.
fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match fine {
        true if name != "ca" => Ok(()),
        _ => Err(format!(
            "`{name}` is not a usable name (letters, digits, `-`, `.`; not `ca`)"
        )),
    }
}

pub struct CertsRequest {
    pub out: PathBuf,
    pub agents: Vec<AgentSpec>,
    /// Validity of the certificates made now, in days.
    pub days: u32,
    pub force: bool,
    /// The name in the coordinator's client certificate (what agents may
    /// require with `AGENT_TLS_CLIENT_NAME`).
    pub coordinator_name: String,
}

/// What happened to one file pair.
#[derive(Debug, PartialEq, Eq)]
pub enum Made {
    Wrote(PathBuf),
    /// Its key existed (no `--force`): left as it was.
    Kept(PathBuf),
}

/// Makes what `request` asks for, as of `now`.
pub fn make(request: &CertsRequest, now: OffsetDateTime) -> Result<Vec<Made>, CertsError> {
    check_name(&request.coordinator_name).map_err(CertsError::Refused)?;
    let mut seen = BTreeSet::from([request.coordinator_name.as_str()]);
    if let Some(dup) = request.agents.iter().find(|a| !seen.insert(&a.name)) {
        return Err(CertsError::Refused(format!(
            "`{}` is named twice (agents and the coordinator each need their own name)",
            dup.name
        )));
    }
    if request.days == 0 {
        return Err(CertsError::Refused("--days must be at least 1".into()));
    }
    std::fs::create_dir_all(&request.out).map_err(|source| CertsError::Io {
        path: request.out.clone(),
        source,
    })?;
    let files = |name: &str| {
        (
            request.out.join(format!("{name}.pem")),
            request.out.join(format!("{name}-key.pem")),
        )
    };
    let leaves: Vec<(&str, Vec<String>, ExtendedKeyUsagePurpose)> = std::iter::once((
        request.coordinator_name.as_str(),
        vec![request.coordinator_name.clone()],
        ExtendedKeyUsagePurpose::ClientAuth,
    ))
    .chain(request.agents.iter().map(|a| {
        let mut names = vec![a.name.clone(), "localhost".into(), "127.0.0.1".into()];
        for extra in &a.extra_names {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        (a.name.as_str(), names, ExtendedKeyUsagePurpose::ServerAuth)
    }))
    .collect();

    let mut made = Vec::new();
    let (ca_cert, ca_key) = files("ca");
    let ca_params = ca_params(now, request.days.max(CA_MIN_DAYS))?;
    let reuse_ca = ca_key.exists() && !request.force;
    let issuer = if reuse_ca {
        if !ca_cert.exists() {
            return Err(CertsError::Refused(format!(
                "{} exists but {} does not: restore it, or use --force to make a new CA",
                ca_key.display(),
                ca_cert.display()
            )));
        }
        made.push(Made::Kept(ca_cert.clone()));
        Issuer::new(ca_params, read_key(&ca_key)?)
    } else {
        // Certificates kept from an old CA would not chain to a new one.
        if !request.force
            && let Some((name, _, _)) = leaves.iter().find(|(name, _, _)| files(name).1.exists())
        {
            return Err(CertsError::Refused(format!(
                "{} has no CA key but {name}'s key exists: certificates of another CA would be \
                 kept; use --force to make everything new",
                request.out.display()
            )));
        }
        let key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let cert = ca_params
            .self_signed(&key)
            .map_err(rcgen_error("CA certificate"))?;
        write(&ca_key, &key.serialize_pem(), 0o600)?;
        write(&ca_cert, &cert.pem(), 0o644)?;
        made.push(Made::Wrote(ca_cert.clone()));
        Issuer::new(ca_params, key)
    };

    for (name, names, usage) in leaves {
        let (cert_path, key_path) = files(name);
        if key_path.exists() && !request.force {
            made.push(Made::Kept(cert_path));
            continue;
        }
        let params = leaf_params(name, names, usage, now, request.days)?;
        let key = KeyPair::generate().map_err(rcgen_error(name))?;
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_error(name))?;
        if reuse_ca {
            check_chain(cert.der(), &ca_cert)?;
        }
        write(&key_path, &key.serialize_pem(), 0o600)?;
        write(&cert_path, &cert.pem(), 0o644)?;
        made.push(Made::Wrote(cert_path));
    }
    Ok(made)
}

fn rcgen_error(what: &str) -> impl Fn(rcgen::Error) -> CertsError + '_ {
    move |source| CertsError::Rcgen {
        what: what.to_owned(),
        source,
    }
}

/// The CA: signs end-entity certificates only (no intermediates).
fn ca_params(now: OffsetDateTime, days: u32) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("CA"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Allow for clocks a little behind this one.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(params)
}

fn leaf_params(
    name: &str,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    now: OffsetDateTime,
    days: u32,
) -> Result<CertificateParams, CertsError> {
    let mut params = CertificateParams::new(names).map_err(rcgen_error(name))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
    Ok(params)
}

fn read_key(path: &Path) -> Result<KeyPair, CertsError> {
    let pem = std::fs::read_to_string(path).map_err(|source| CertsError::Io {
        path: path.to_owned(),
        source,
    })?;
    KeyPair::from_pem(&pem).map_err(|source| CertsError::Rcgen {
        what: path.display().to_string(),
        source,
    })
}

/// A CA key reused with `ca.pem`: the certificates it signs must chain to
/// that file (it does unless `ca.pem` was made by something else).
fn check_chain(leaf: &CertificateDer<'_>, ca_cert: &Path) -> Result<(), CertsError> {
    let refused = |why: String| {
        CertsError::Refused(format!(
            "{} does not match ca-key.pem ({why}); was it made by `coordinator certs`? \
             --force makes a new CA",
            ca_cert.display()
        ))
    };
    let ca = CertificateDer::from_pem_file(ca_cert).map_err(|e| refused(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| refused(e.to_string()))?;
    let parsed =
        rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| refused(e.to_string()))?;
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &[],
        UnixTime::now(),
        algorithms.all,
    )
    .map_err(|e| refused(e.to_string()))
}

/// Writes `text` to `path` with `mode`, replacing what was there.
fn write(path: &Path, text: &str, mode: u32) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        path: path.to_owned(),
        source,
    };
    // Removed first: opening an existing file keeps its old mode.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    // The umask may have taken bits away; the mode is what was asked.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)
}

/// Runs `coordinator certs` and says what it wrote and kept.
pub fn run(request: &CertsRequest) -> Result<(), CertsError> {
    for made in make(request, OffsetDateTime::now_utc())? {
        match made {
            Made::Wrote(path) => println!("wrote {}", path.display()),
            Made::Kept(path) => println!(
                "kept  {} (its key exists; --force replaces it)",
                path.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(out: &Path, agents: &[&str]) -> CertsRequest {
        CertsRequest {
            out: out.to_owned(),
            agents: agents.iter().map(|a| a.parse().unwrap()).collect(),
            days: 30,
            force: false,
            coordinator_name: "coordinator".into(),
        }
    }

    #[test]
    fn agent_specs_name_extra_names() {
        let spec: AgentSpec = "mailcow-agent=mail.example.com, 10.0.0.5".parse().unwrap();
        assert_eq!(spec.name, "mailcow-agent");
        assert_eq!(spec.extra_names, ["mail.example.com", "10.0.0.5"]);
        assert!("../etc".parse::<AgentSpec>().is_err());
        assert!("ca".parse::<AgentSpec>().is_err());
    }

    #[test]
    fn keys_are_private_and_never_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let first = make(&request(dir.path(), &["mailcow-agent"]), now).unwrap();
        assert_eq!(first.len(), 3, "{first:?}");
        for key in ["ca-key.pem", "coordinator-key.pem", "mailcow-agent-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let ca_key = std::fs::read(dir.path().join("ca-key.pem")).unwrap();
        let agent_key = std::fs::read(dir.path().join("mailcow-agent-key.pem")).unwrap();

        // A second run adds an agent, signed by the same CA; nothing else moves.
        let second = make(&request(dir.path(), &["mailcow-agent", "sogo-agent"]), now).unwrap();
        assert!(second.contains(&Made::Kept(dir.path().join("mailcow-agent.pem"))));
        assert!(second.contains(&Made::Wrote(dir.path().join("sogo-agent.pem"))));
        assert_eq!(
            std::fs::read(dir.path().join("ca-key.pem")).unwrap(),
            ca_key
        );
        assert_eq!(
            std::fs::read(dir.path().join("mailcow-agent-key.pem")).unwrap(),
            agent_key
        );
        let sogo = CertificateDer::from_pem_file(dir.path().join("sogo-agent.pem")).unwrap();
        check_chain(&sogo, &dir.path().join("ca.pem")).unwrap();

        // Without the CA key, existing leaf keys stop a run that would mix CAs.
        std::fs::remove_file(dir.path().join("ca-key.pem")).unwrap();
        let err = make(&request(dir.path(), &["mailcow-agent"]), now).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");

        // --force replaces everything.
        let mut forced = request(dir.path(), &["mailcow-agent"]);
        forced.force = true;
        make(&forced, now).unwrap();
        assert_ne!(
            std::fs::read(dir.path().join("mailcow-agent-key.pem")).unwrap(),
            agent_key
        );
    }
}
