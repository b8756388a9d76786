//! TLS for the device listener: the server's rustls settings (client certificates required,
//! verified against the group CA) and the peer certificate's subject CN.

use std::io;
use std::path::Path;
use std::sync::Arc;

use ntex::server::rustls::PeerCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::ServerFiles;

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("{}: {what}", path.display())]
    Bad {
        path: std::path::PathBuf,
        what: String,
    },
    #[error("TLS settings: {0}")]
    Rustls(String),
}

pub(super) fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Bad {
            path: path.into(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Bad {
            path: path.into(),
            what: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The server's rustls settings: its certificate, and client certificates required and
/// verified against the group CA.
pub(crate) fn tls_config(files: &ServerFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(&files.ca)? {
        roots.add(ca).map_err(|e| TlsError::Bad {
            path: files.ca.clone(),
            what: e.to_string(),
        })?;
    }
    let chain = pem_certs(&files.cert)?;
    let key_data = std::fs::read(&files.key).map_err(|source| TlsError::Io {
        path: files.key.clone(),
        source,
    })?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_data[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Bad {
            path: files.key.clone(),
            what: "no PEM private key in the file".into(),
        })?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The subject CN of the TLS peer's certificate, if any.
pub(super) fn peer_cn(io: &ntex::io::IoBoxed) -> Option<String> {
    let item = io.query::<PeerCert<'static>>();
    let cert = item.as_ref()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.0.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    cn
}
