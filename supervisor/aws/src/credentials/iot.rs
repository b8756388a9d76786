//! The AWS IoT credentials provider: temporary credentials for a role
//! alias, obtained with the core's certificate over mutual TLS (what
//! Greengrass's token exchange service did), cached and refreshed before
//! they expire.
//!
//! `GET https://<iotCredEndpoint>/role-aliases/<iotRoleAlias>/credentials`
//! with the header `x-amzn-iot-thingname: <core thing name>` answers
//! `{"credentials":{"accessKeyId","secretAccessKey","sessionToken","expiration"}}`
//! where `expiration` is RFC 3339.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evergreen_ipc::AwsCredentials;
use serde::Deserialize;

/// Credentials this close to expiry are fetched again before being handed out,
/// so a connector never signs with keys that lapse mid-request.
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The core's certificate, key and the CA that signs the endpoint's
/// certificate (`coreThing.caPath`, `certPath`, `keyPath`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub(crate) struct IotProvider {
    url: String,
    thing_name: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<AwsCredentials>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    credentials: Fields,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// Why the IoT credentials provider cannot be set up or did not answer with
/// credentials. The messages reach the runtime's log and a connector's
/// status, so they name the setting or URL involved.
#[derive(Debug, thiserror::Error)]
pub enum IotError {
    #[error("iotRoleAlias {0:?} is not a role alias name")]
    BadRoleAlias(String),
    #[error("{what} {}: {message}", path.display())]
    TlsFile {
        /// The configuration key that named the file.
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{0}")]
    Tls(rustls::Error),
    #[error("the core's certificate and key: {0}")]
    CertAndKey(rustls::Error),
    #[error("cannot build the HTTPS client: {0}")]
    Client(reqwest::Error),
    #[error("the AWS IoT credentials provider at {url} failed: {why}")]
    Provider { url: String, why: String },
}

impl IotProvider {
    /// `endpoint` is a host name (`<prefix>.credentials.iot.<region>.amazonaws.com`)
    /// or a URL (`https://host:port`, for tests and proxies).
    pub(crate) fn new(
        endpoint: &str,
        role_alias: &str,
        thing_name: &str,
        files: &TlsFiles,
    ) -> Result<Self, IotError> {
        let base = if endpoint.contains("://") {
            endpoint.trim_end_matches('/').to_string()
        } else {
            format!("https://{endpoint}")
        };
        if role_alias.is_empty() || role_alias.contains('/') {
            return Err(IotError::BadRoleAlias(role_alias.to_owned()));
        }
        let tls = tls_config(files)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(IotError::Client)?;
        Ok(IotProvider {
            url: format!("{base}/role-aliases/{role_alias}/credentials"),
            thing_name: thing_name.to_string(),
            http,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// Cached credentials while they have more than [`REFRESH_BEFORE`] left,
    /// else fresh ones. Concurrent askers wait for one fetch.
    pub(crate) async fn credentials(&self) -> Result<AwsCredentials, IotError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| fresh(c, now_ms())) {
            return Ok(c.clone());
        }
        let fetched = self.fetch().await?;
        *cache = Some(fetched.clone());
        Ok(fetched)
    }

    async fn fetch(&self) -> Result<AwsCredentials, IotError> {
        let why = |e: &dyn std::fmt::Display| IotError::Provider {
            url: self.url.clone(),
            why: e.to_string(),
        };
        let response = self
            .http
            .get(&self.url)
            .header("x-amzn-iot-thingname", &self.thing_name)
            .send()
            .await
            .map_err(|e| why(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| why(&e))?;
        if !status.is_success() {
            // The provider's error body is a short JSON message, never a secret.
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(why(&format!("HTTP {status}: {text}")));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| why(&e))?;
        let f = answer.credentials;
        let expires = time::OffsetDateTime::parse(
            &f.expiration,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| why(&format!("expiration {:?}: {e}", f.expiration)))?;
        let expiration_ms = u64::try_from(expires.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Ok(AwsCredentials {
            access_key_id: f.access_key_id,
            secret_access_key: f.secret_access_key,
            session_token: Some(f.session_token),
            expiration_ms: Some(expiration_ms),
        })
    }
}

fn fresh(c: &AwsCredentials, now_ms: u64) -> bool {
    match c.expiration_ms {
        None => true,
        Some(exp) => exp.saturating_sub(now_ms) > REFRESH_BEFORE.as_millis() as u64,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, IotError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &'static str, path: &PathBuf, e: &dyn std::fmt::Display| IotError::TlsFile {
        what,
        path: path.clone(),
        message: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            for cert in
                CertificateDer::pem_file_iter(ca).map_err(|e| bad("coreThing.caPath", ca, &e))?
            {
                let cert = cert.map_err(|e| bad("coreThing.caPath", ca, &e))?;
                roots
                    .add(cert)
                    .map_err(|e| bad("coreThing.caPath", ca, &e))?;
            }
        }
        None => {
            // The system's roots, as the endpoint's certificate is a public one.
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("coreThing.certPath", &files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("coreThing.certPath", &files.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad("coreThing.keyPath", &files.key, &e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(IotError::Tls)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(IotError::CertAndKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_close_to_expiry_are_not_fresh() {
        let mut c = AwsCredentials {
            access_key_id: "A".into(),
            secret_access_key: "s".into(),
            session_token: None,
            expiration_ms: None,
        };
        assert!(fresh(&c, 1_000_000));
        c.expiration_ms = Some(1_000_000 + 6 * 60_000);
        assert!(fresh(&c, 1_000_000));
        c.expiration_ms = Some(1_000_000 + 4 * 60_000);
        assert!(!fresh(&c, 1_000_000));
    }

    /// The files of a test PKI: a CA, a certificate and key under it.
    struct Files {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    }

    /// A CA of its own under `dir`, a server certificate for 127.0.0.1 and a client
    /// certificate for `core-thing`, both signed by it (what `evergreen certs init` and
    /// `certs device` make, done here with rcgen since this crate sits below the MQTT one).
    fn pki(dir: &std::path::Path) -> (Files, (PathBuf, PathBuf)) {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pem");
            path
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "evergreen test CA");
        let ca = params.self_signed(&ca_key).expect("ca");
        let issue = |cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = issue(
            "127.0.0.1",
            vec!["127.0.0.1".to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = issue(
            "core-thing",
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let files = Files {
            ca: write("ca.pem", ca.pem()),
            cert: write("server.pem", server_cert),
            key: write("server.key", server_key),
        };
        let client = (
            write("core-thing.pem", client_cert),
            write("core-thing.key", client_key),
        );
        (files, client)
    }

    /// A credentials provider of our own: HTTPS on loopback that demands a
    /// client certificate signed by the group CA, checks the path and the
    /// thing-name header, and answers credentials that expire in
    /// `expires_in` seconds (one entry per request it will serve).
    fn provider(
        files: &Files,
        expires_in: Vec<i64>,
    ) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use std::io::{Read, Write};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&files.ca).expect("ca") {
            roots.add(c.expect("ca")).expect("add");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(&files.key).expect("key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .expect("server config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for expires in expires_in {
                let (mut tcp, _) = listener.accept().expect("accept");
                tcp.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut conn = rustls::ServerConnection::new(config.clone()).expect("conn");
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                seen.push(String::from_utf8_lossy(&request).to_lowercase());
                let expiration = time::OffsetDateTime::now_utc() + time::Duration::seconds(expires);
                let expiration = expiration
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("format");
                let body = format!(
                    r#"{{"credentials":{{"accessKeyId":"ASIA{}","secretAccessKey":"s","sessionToken":"t","expiration":"{expiration}"}}}}"#,
                    seen.len()
                );
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes());
                let _ = tls.flush();
                conn.send_close_notify();
                let _ = conn.complete_io(&mut tcp);
            }
            seen
        });
        (port, handle)
    }

    #[test]
    fn the_core_certificate_buys_credentials_that_are_cached_until_close_to_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server_files, (cert, key)) = pki(dir.path());
        // First answer expires in an hour (cached), the second in two
        // minutes (inside the refresh margin, so the third call fetches again).
        let (port, server) = provider(&server_files, vec![3600, 120, 3600]);
        let files = TlsFiles {
            ca: Some(server_files.ca.clone()),
            cert,
            key,
        };
        let iot = IotProvider::new(
            &format!("https://127.0.0.1:{port}"),
            "evergreen-role",
            "core-thing",
            &files,
        )
        .expect("provider");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let ids: Vec<String> = rt.block_on(async {
            let mut ids = Vec::new();
            let first = iot.credentials().await.expect("first");
            ids.push(first.access_key_id.clone());
            assert!(first.expiration_ms.is_some() && first.session_token.as_deref() == Some("t"));
            // Cached: no second request.
            ids.push(iot.credentials().await.expect("cached").access_key_id);
            // Force the next fetch by ageing the cache.
            if let Some(c) = iot.cache.lock().await.as_mut() {
                c.expiration_ms = Some(now_ms() + 60_000);
            }
            ids.push(iot.credentials().await.expect("second").access_key_id);
            // The answer expires in two minutes: not fresh, fetched again.
            ids.push(iot.credentials().await.expect("third").access_key_id);
            ids
        });
        assert_eq!(ids, ["ASIA1", "ASIA1", "ASIA2", "ASIA3"]);
        let seen = server.join().expect("server");
        assert_eq!(seen.len(), 3);
        for request in &seen {
            assert!(
                request.starts_with("get /role-aliases/evergreen-role/credentials "),
                "{request}"
            );
            assert!(
                request.contains("x-amzn-iot-thingname: core-thing"),
                "{request}"
            );
        }
    }

    #[test]
    fn without_the_core_certificate_the_provider_refuses_the_handshake() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (server_files, _) = pki(dir.path());
        // A certificate from another CA: the provider must refuse it.
        let other = tempfile::tempdir().expect("tempdir");
        let (_, (cert, key)) = pki(other.path());
        let (port, server) = provider(&server_files, vec![3600]);
        let files = TlsFiles {
            ca: Some(server_files.ca.clone()),
            cert,
            key,
        };
        let iot = IotProvider::new(
            &format!("https://127.0.0.1:{port}"),
            "r",
            "core-thing",
            &files,
        )
        .expect("provider");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let e = rt
            .block_on(iot.credentials())
            .expect_err("refused")
            .to_string();
        assert!(e.contains("credentials provider"), "{e}");
        let _ = server.join();
    }

    #[test]
    fn a_bad_role_alias_is_refused_before_any_call() {
        let files = TlsFiles {
            ca: None,
            cert: "/nonexistent".into(),
            key: "/nonexistent".into(),
        };
        let e = IotProvider::new("example.com", "a/b", "core", &files)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("role alias"), "{e}");
    }
}
