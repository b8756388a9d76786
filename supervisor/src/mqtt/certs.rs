//! The local group CA, the server certificate and device certificates: `evergreen certs`.
//!
//! Files live under `<root>/certs/local/` (directory `0700`, every file `0600`):
//! `ca.pem`/`ca.key` (the group CA), `server.pem`/`server.key` (the MQTT server's certificate,
//! signed by the CA) and `devices/<thing>.pem`/`devices/<thing>.key`. The configuration keys
//! `evergreen.listeners.mqttTls.caPath/certPath/keyPath` point the server at other files instead.
//! Keys are ECDSA P-256. RSA 2048 is not generated here: rcgen generates RSA keys only with the
//! aws-lc backend, which this build does not carry; an operator's existing RSA CA and server
//! files work through the configuration keys (rustls verifies and signs RSA).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Where the generated files live under the runtime root.
pub fn local_dir(root: &Path) -> PathBuf {
    root.join("certs").join("local")
}

/// Paths of the CA, server certificate and server key the server uses by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServerFiles {
    pub fn default_under(root: &Path) -> Self {
        let dir = local_dir(root);
        ServerFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("{0}")]
    Usage(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn make_dir(dir: &Path) -> Result<(), CertError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Writes `text` to `path` readable by the owner only (a fresh file: created with `0600`).
fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Evergreen local group");
    dn.push(DnType::CommonName, cn);
    dn
}

/// What `certs init` wrote.
#[derive(Debug)]
pub struct InitOutcome {
    pub files: ServerFiles,
    pub created_ca: bool,
}

/// Creates the group CA (unless it exists, or `force`) and a server certificate for `hosts`
/// (DNS names or IP addresses; `localhost`, `127.0.0.1` and `::1` are always included).
pub fn init(root: &Path, hosts: &[String], force: bool) -> Result<InitOutcome, CertError> {
    let dir = local_dir(root);
    make_dir(&dir)?;
    let files = ServerFiles::default_under(root);
    let created_ca = force || !files.ca.exists() || !dir.join("ca.key").exists();
    if created_ca {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Evergreen group CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let cert = params.self_signed(&key)?;
        write_private(&dir.join("ca.key"), &key.serialize_pem())?;
        write_private(&files.ca, &cert.pem())?;
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let (cert, key) = issue(root, "evergreen-server", &names, true)?;
    write_private(&files.key, &key)?;
    write_private(&files.cert, &cert)?;
    Ok(InitOutcome { files, created_ca })
}

/// Issues a device certificate whose subject CN is `thing` (the device's thing name and MQTT
/// client id). Returns the certificate and key paths.
pub fn device(root: &Path, thing: &str) -> Result<(PathBuf, PathBuf), CertError> {
    if thing.is_empty()
        || thing.len() > 128
        || !thing
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    {
        return Err(CertError::Usage(format!(
            "thing name {thing:?}: 1..128 characters of a-z A-Z 0-9 - _ : . (an AWS IoT thing name)"
        )));
    }
    let (cert, key) = issue(root, thing, &[], false)?;
    let dir = local_dir(root).join("devices");
    make_dir(&dir)?;
    let cert_path = dir.join(format!("{thing}.pem"));
    let key_path = dir.join(format!("{thing}.key"));
    write_private(&key_path, &key)?;
    write_private(&cert_path, &cert)?;
    Ok((cert_path, key_path))
}

/// A certificate signed by the CA under `root`: (certificate PEM, key PEM).
fn issue(
    root: &Path,
    cn: &str,
    sans: &[String],
    server: bool,
) -> Result<(String, String), CertError> {
    let dir = local_dir(root);
    let ca_pem = read(&dir.join("ca.pem"))
        .map_err(|e| CertError::Usage(format!("{e}; run `evergreen certs init` first")))?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)?.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_and_device_write_owner_only_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = init(dir.path(), &["gw.local".into()], false).expect("init");
        assert!(out.created_ca);
        let (cert, key) = device(dir.path(), "lamp-1").expect("device");
        for p in [&out.files.ca, &out.files.cert, &out.files.key, &cert, &key] {
            let mode = fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let mode = fs::metadata(local_dir(dir.path()))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        // A second init keeps the CA, so device certificates stay valid.
        let ca = fs::read(&out.files.ca).expect("ca");
        assert!(!init(dir.path(), &[], false).expect("again").created_ca);
        assert_eq!(fs::read(&out.files.ca).expect("ca"), ca);
        assert!(device(dir.path(), "bad/name").is_err());
    }
}
