//! The local group CA, the server certificate and device certificates: `evergreen certs`.
//!
//! Files live under `<root>/certs/local/` (directory `0700`, every file `0600`):
//! `ca.pem`/`ca.key` (the group CA), `server.pem`/`server.key` (the MQTT server's certificate,
//! signed by the CA) and `devices/<thing>.pem`/`devices/<thing>.key`. The configuration keys
//! `evergreen.listeners.mqttTls.caPath/certPath/keyPath` point the server at other files instead.
//! Keys are ECDSA P-256, or RSA 2048 with `--rsa` (for devices whose TLS stacks lack ECDSA).
//! rcgen generates RSA keys only on the aws-lc backend, which this build does not carry, so the
//! RSA key is made by RustCrypto's `rsa` crate and handed to rcgen, which signs with it on ring.
//! An operator's existing CA and server files work through the configuration keys instead.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Where the generated files live under the runtime root.
pub(crate) fn local_dir(root: &Path) -> PathBuf {
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
    pub(crate) fn default_under(root: &Path) -> Self {
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

/// Writes `text` to `path` readable by the owner only, atomically and durably.
fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    evergreen_durable::write_atomic(path, text.as_bytes(), evergreen_durable::Mode::Private)
        .map_err(io_err(path))
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

/// The algorithm of the keys `evergreen certs` generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlg {
    #[default]
    EcdsaP256,
    Rsa2048,
}

impl KeyAlg {
    fn generate(self) -> Result<KeyPair, CertError> {
        match self {
            KeyAlg::EcdsaP256 => Ok(KeyPair::generate()?),
            KeyAlg::Rsa2048 => {
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .map_err(|e| CertError::Usage(format!("RSA key generation: {e}")))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| CertError::Usage(format!("RSA key encoding: {e}")))?;
                let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
                Ok(KeyPair::from_pkcs8_der_and_sign_algo(
                    &der,
                    &rcgen::PKCS_RSA_SHA256,
                )?)
            }
        }
    }
}

/// Creates the group CA (unless it exists, or `force`) and a server certificate for `hosts`
/// (DNS names or IP addresses; `localhost`, `127.0.0.1` and `::1` are always included).
pub fn init(root: &Path, hosts: &[String], force: bool) -> Result<InitOutcome, CertError> {
    init_with(root, hosts, force, KeyAlg::EcdsaP256)
}

/// [`init`] with keys of algorithm `alg` (the CA's, when one is created, and the server's).
pub fn init_with(
    root: &Path,
    hosts: &[String],
    force: bool,
    alg: KeyAlg,
) -> Result<InitOutcome, CertError> {
    let dir = local_dir(root);
    make_dir(&dir)?;
    let files = ServerFiles::default_under(root);
    let created_ca = force || !files.ca.exists() || !dir.join("ca.key").exists();
    if created_ca {
        let key = alg.generate()?;
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
    let (cert, key) = issue(root, "evergreen-server", &names, true, alg)?;
    write_private(&files.key, &key)?;
    write_private(&files.cert, &cert)?;
    Ok(InitOutcome { files, created_ca })
}

/// Issues a device certificate whose subject CN is `thing` (the device's thing name and MQTT
/// client id). Returns the certificate and key paths.
pub fn device(root: &Path, thing: &str) -> Result<(PathBuf, PathBuf), CertError> {
    device_with(root, thing, KeyAlg::EcdsaP256)
}

/// [`device`] with a key of algorithm `alg`.
pub fn device_with(root: &Path, thing: &str, alg: KeyAlg) -> Result<(PathBuf, PathBuf), CertError> {
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
    let (cert, key) = issue(root, thing, &[], false, alg)?;
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
    alg: KeyAlg,
) -> Result<(String, String), CertError> {
    let dir = local_dir(root);
    let ca_pem = read(&dir.join("ca.pem"))
        .map_err(|e| CertError::Usage(format!("{e}; run `evergreen certs init` first")))?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let ca = CertificateParams::from_ca_cert_pem(&ca_pem)?.self_signed(&ca_key)?;
    let key = alg.generate()?;
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

    /// A full mutual-TLS handshake in memory: the server presents `server`,
    /// the client `client`, each checks the other against `ca`.
    fn handshake(ca: &Path, server: (&Path, &Path), client: (&Path, &Path)) -> Result<(), String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::sync::Arc;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
            roots
                .add(c.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let roots = Arc::new(roots);
        let chain = |p: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
            CertificateDer::pem_file_iter(p)
                .map_err(|e| e.to_string())?
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())
        };
        let key = |p: &Path| PrivateKeyDer::from_pem_file(p).map_err(|e| e.to_string());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain(server.0)?, key(server.1)?)
            .map_err(|e| e.to_string())?;
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain(client.0)?, key(client.1)?)
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let mut c = rustls::ClientConnection::new(Arc::new(client_config), name)
            .map_err(|e| e.to_string())?;
        let mut s =
            rustls::ServerConnection::new(Arc::new(server_config)).map_err(|e| e.to_string())?;
        for _ in 0..20 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).map_err(|e| e.to_string())?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).map_err(|e| e.to_string())?;
            }
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).map_err(|e| e.to_string())?;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).map_err(|e| e.to_string())?;
            }
            c.process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
        }
        Err("the handshake did not finish".into())
    }

    fn public_key_bits(pem_path: &Path) -> (String, usize) {
        let pem = fs::read(pem_path).expect("read");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        let spki = cert.public_key();
        let alg = spki.algorithm.algorithm.to_id_string();
        (alg, spki.parsed().map(|k| k.key_size()).unwrap_or(0))
    }

    #[test]
    fn rsa_2048_keys_make_certificates_that_complete_a_mutual_tls_handshake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = init_with(dir.path(), &[], false, KeyAlg::Rsa2048).expect("init --rsa");
        let (cert, key) = device_with(dir.path(), "lamp-1", KeyAlg::Rsa2048).expect("device --rsa");
        const RSA: &str = "1.2.840.113549.1.1.1";
        for p in [&out.files.ca, &out.files.cert, &cert] {
            assert_eq!(
                public_key_bits(p),
                (RSA.to_string(), 2048),
                "{}",
                p.display()
            );
        }
        handshake(
            &out.files.ca,
            (&out.files.cert, &out.files.key),
            (&cert, &key),
        )
        .expect("handshake");
        // An ECDSA device under the RSA CA works too, and a device of
        // another CA is refused by the server.
        let (ec_cert, ec_key) = device(dir.path(), "lamp-2").expect("device");
        assert_eq!(public_key_bits(&ec_cert).0, "1.2.840.10045.2.1");
        handshake(
            &out.files.ca,
            (&out.files.cert, &out.files.key),
            (&ec_cert, &ec_key),
        )
        .expect("mixed");
        let other = tempfile::tempdir().expect("tempdir");
        init(other.path(), &[], false).expect("other ca");
        let (o_cert, o_key) = device(other.path(), "lamp-3").expect("other device");
        let e = handshake(
            &out.files.ca,
            (&out.files.cert, &out.files.key),
            (&o_cert, &o_key),
        )
        .expect_err("foreign device");
        assert!(e.contains("server"), "{e}");
    }
}
