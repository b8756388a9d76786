//! The certificate checks of `evergreen check`: the core's cloud identity (`coreThing.caPath`,
//! `certPath`, `keyPath`) and the local MQTT server's group CA and server certificate. Each file
//! is read as the runtime reads it (PEM through `rustls-pemfile`, keys through rustls' ring
//! provider), parsed with `x509-parser`, and judged: present and readable, within its validity
//! dates, the key matching the certificate, the CA signing the certificate. It only reads files.

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::time::ASN1Time;

use super::{Check, Needs};
use evergreen_config::CoreConfig;

/// A certificate expiring within this many days is a warning.
const EXPIRY_WARN_DAYS: i64 = 30;
const DAY_SECS: i64 = 24 * 3600;

/// What the clock check needs from the certificates: the latest `notBefore` seen.
#[derive(Debug, Default)]
pub(crate) struct CertTimes {
    /// Unix time, its text, and the file.
    pub(crate) latest_not_before: Option<(i64, String, PathBuf)>,
}

impl CertTimes {
    fn saw(&mut self, cert: &X509Certificate<'_>, path: &Path) {
        let nb = cert.validity().not_before;
        if self
            .latest_not_before
            .as_ref()
            .is_none_or(|(t, _, _)| nb.timestamp() > *t)
        {
            self.latest_not_before = Some((nb.timestamp(), nb.to_string(), path.to_path_buf()));
        }
    }
}

/// Which identity a set of files is, for names and hints.
#[derive(Debug, Clone, Copy)]
struct Identity {
    /// `cloud` or `local MQTT`.
    prefix: &'static str,
    /// The configuration keys, for messages.
    ca_key: &'static str,
    cert_key: &'static str,
    key_key: &'static str,
    /// Whether the CA must sign the certificate (the group CA does; AWS IoT's root CA verifies
    /// the endpoint's server, not the device certificate AWS IoT issued).
    ca_must_sign: bool,
}

const CLOUD: Identity = Identity {
    prefix: "cloud",
    ca_key: "coreThing.caPath",
    cert_key: "coreThing.certPath",
    key_key: "coreThing.keyPath",
    ca_must_sign: false,
};

const LOCAL: Identity = Identity {
    prefix: "local MQTT",
    ca_key: "evergreen.listeners.mqttTls.caPath",
    cert_key: "evergreen.listeners.mqttTls.certPath",
    key_key: "evergreen.listeners.mqttTls.keyPath",
    ca_must_sign: true,
};

/// The cloud identity's and the local MQTT server's files.
pub(crate) fn check_all(cfg: &CoreConfig, needs: &Needs, checks: &mut Vec<Check>) -> CertTimes {
    let mut times = CertTimes::default();
    cloud(cfg, &mut times, checks);
    local(cfg, needs, &mut times, checks);
    times
}

fn cloud(cfg: &CoreConfig, times: &mut CertTimes, checks: &mut Vec<Check>) {
    let (ca, cert, key) = (cfg.ca_path(), cfg.cert_path(), cfg.key_path());
    let host = cfg.core_thing.iot_host.as_deref();
    let name = "cloud certificate";
    if ca.is_none() && cert.is_none() && key.is_none() {
        checks.push(match host {
            None => Check::ok(
                name,
                "not configured: no coreThing.iotHost, caPath, certPath or keyPath (no cloud \
                 connection; messages to \"cloud\" are dropped and counted)",
            ),
            Some(_) if !cfg.evergreen.cloud_tls => Check::ok(
                name,
                "not needed: evergreen.cloudTls is false (plain TCP to coreThing.iotHost)",
            ),
            Some(host) => Check::fail(
                name,
                format!("coreThing.iotHost is {host} but no caPath, certPath or keyPath is set"),
                "set coreThing.caPath, certPath and keyPath (relative paths are under \
                 <root>/certs), or evergreen.cloudTls to false for a plain broker",
            ),
        });
        return;
    }
    let need_all = host.is_some() && cfg.evergreen.cloud_tls;
    let missing = |what: &str, key: &str| {
        Check::fail(
            format!("cloud {what}"),
            format!("{key} is not set"),
            format!("set {key}: the cloud connection with TLS needs the CA, certificate and key"),
        )
    };
    match (&cert, &key) {
        (Some(cert), key) => {
            pair(CLOUD, cert, key.as_deref(), times, checks);
            if key.is_none() && need_all {
                checks.push(missing("key", CLOUD.key_key));
            }
        }
        (None, _) if need_all => checks.push(missing("certificate", CLOUD.cert_key)),
        (None, _) => {}
    }
    match &ca {
        Some(ca) => checks.push(authority(CLOUD, ca, cert.as_deref(), times)),
        None if need_all => checks.push(missing("CA", CLOUD.ca_key)),
        None => {}
    }
}

fn local(cfg: &CoreConfig, needs: &Needs, times: &mut CertTimes, checks: &mut Vec<Check>) {
    let setup = evergreen_mqtt::Setup::from_config(cfg);
    let files = setup.tls_files();
    if !setup.tls_enabled() {
        let detail = format!(
            "TLS listener off: no group CA and server certificate at {} and {}",
            files.ca.display(),
            files.cert.display()
        );
        checks.push(if needs.devices {
            Check::warn(
                "local MQTT certificate",
                format!("{detail}; the group has devices, and they cannot connect"),
                "run `evergreen certs init` (or name the files under evergreen.listeners.mqttTls)",
            )
        } else {
            Check::ok(
                "local MQTT certificate",
                format!("{detail} (the group has no devices)"),
            )
        });
        return;
    }
    pair(LOCAL, &files.cert, Some(&files.key), times, checks);
    checks.push(authority(LOCAL, &files.ca, Some(&files.cert), times));
}

/// The certificate (`<prefix> certificate`) and, when named, its key (`<prefix> key`).
fn pair(
    id: Identity,
    cert_path: &Path,
    key_path: Option<&Path>,
    times: &mut CertTimes,
    checks: &mut Vec<Check>,
) {
    let cert_name = format!("{} certificate", id.prefix);
    let ders = match read_certs(cert_path) {
        Ok(ders) => ders,
        Err(why) => {
            checks.push(Check::fail(
                cert_name,
                format!("{} {}: {why}", id.cert_key, cert_path.display()),
                unreadable_hint(id.cert_key),
            ));
            if let Some(key_path) = key_path {
                checks.push(key_without_cert(id, key_path));
            }
            return;
        }
    };
    let Some(leaf) = ders.first() else {
        return;
    };
    let cert = match parse(leaf) {
        Ok(cert) => cert,
        Err(why) => {
            checks.push(Check::fail(
                cert_name,
                format!("{} {}: {why}", id.cert_key, cert_path.display()),
                "the file must hold the PEM certificate issued for this core",
            ));
            return;
        }
    };
    times.saw(&cert, cert_path);
    checks.push(validity(&cert_name, id.cert_key, cert_path, &cert, true));
    if let Some(key_path) = key_path {
        checks.push(key_matches(id, key_path, &cert));
    }
}

fn key_without_cert(id: Identity, key_path: &Path) -> Check {
    let name = format!("{} key", id.prefix);
    match read_key(key_path) {
        Ok(_) => Check::ok(
            name,
            format!(
                "{} {}: readable (not compared: no certificate)",
                id.key_key,
                key_path.display()
            ),
        ),
        Err(why) => Check::fail(
            name,
            format!("{} {}: {why}", id.key_key, key_path.display()),
            unreadable_hint(id.key_key),
        ),
    }
}

/// `<prefix> key`: readable, a key rustls can sign with, and the certificate's public key.
fn key_matches(id: Identity, key_path: &Path, cert: &X509Certificate<'_>) -> Check {
    let name = format!("{} key", id.prefix);
    let shown = format!("{} {}", id.key_key, key_path.display());
    let key = match read_key(key_path) {
        Ok(key) => key,
        Err(why) => {
            return Check::fail(name, format!("{shown}: {why}"), unreadable_hint(id.key_key))
        }
    };
    let signer = match rustls::crypto::ring::sign::any_supported_type(&key) {
        Ok(signer) => signer,
        Err(e) => {
            return Check::fail(
                name,
                format!("{shown}: not a usable private key: {e}"),
                "use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key in PEM",
            )
        }
    };
    let Some(spki) = signer.public_key() else {
        return Check::warn(
            name,
            format!(
                "{shown}: readable, but its public key cannot be compared with the certificate's"
            ),
            "make sure keyPath and certPath were issued together",
        );
    };
    if spki.as_ref() == cert.tbs_certificate.subject_pki.raw {
        Check::ok(name, format!("{shown}: matches the certificate"))
    } else {
        Check::fail(
            name,
            format!("{shown}: does not match the certificate (a different key pair)"),
            format!(
                "{} must be the private key of {}'s certificate: use the pair issued together",
                id.key_key, id.cert_key
            ),
        )
    }
}

/// `<prefix> CA`: readable, within its dates, and signing the certificate when it must (or
/// when the certificate names it as issuer).
fn authority(
    id: Identity,
    ca_path: &Path,
    cert_path: Option<&Path>,
    times: &mut CertTimes,
) -> Check {
    let name = format!("{} CA", id.prefix);
    let shown = format!("{} {}", id.ca_key, ca_path.display());
    let ca_ders = match read_certs(ca_path) {
        Ok(ders) => ders,
        Err(why) => {
            return Check::fail(name, format!("{shown}: {why}"), unreadable_hint(id.ca_key))
        }
    };
    let mut cas = Vec::new();
    for der in &ca_ders {
        match parse(der) {
            Ok(ca) => cas.push(ca),
            Err(why) => {
                return Check::fail(
                    name,
                    format!("{shown}: {why}"),
                    "the file must hold PEM CA certificates",
                )
            }
        }
    }
    let mut expiring = None;
    for ca in &cas {
        times.saw(ca, ca_path);
        let dates = validity(&name, id.ca_key, ca_path, ca, false);
        match dates.status {
            super::Status::Ok => {}
            super::Status::Warn => expiring = Some(dates),
            super::Status::Fail => return dates,
        }
    }
    let signed = signs(id, &name, &shown, &cas, cert_path);
    // A CA about to expire is worth saying even when it signs the certificate.
    match expiring {
        Some(warn) if signed.status == super::Status::Ok => Check {
            detail: format!("{}; {}", warn.detail, signed.detail),
            ..warn
        },
        _ => signed,
    }
}

/// Whether the CA certificates `cas` sign the certificate at `cert_path`, when they must or
/// when the certificate names one of them as its issuer.
fn signs(
    id: Identity,
    name: &str,
    shown: &str,
    cas: &[X509Certificate<'_>],
    cert_path: Option<&Path>,
) -> Check {
    // The leaf, parsed again (it was judged by `pair`): here only its issuer and signature.
    let leaf_ders = cert_path
        .and_then(|p| read_certs(p).ok())
        .unwrap_or_default();
    let Some(leaf) = leaf_ders.first().and_then(|d| parse(d).ok()) else {
        return Check::ok(
            name,
            format!("{shown}: {} certificate(s), within their dates", cas.len()),
        );
    };
    let issuer = leaf.issuer().as_raw();
    let Some(signer) = cas.iter().find(|ca| ca.subject().as_raw() == issuer) else {
        return if id.ca_must_sign {
            Check::fail(
                name,
                format!(
                    "{shown}: does not hold the issuer of the server certificate ({})",
                    leaf.issuer()
                ),
                "the server certificate must be signed by the group CA: make both with \
                 `evergreen certs init`, or name the CA that issued it",
            )
        } else {
            Check::ok(
                name,
                format!(
                    "{shown}: {} certificate(s), within their dates; the core certificate is issued \
                     by {} (as with AWS IoT, caPath verifies the endpoint's server: see upstream TLS)",
                    cas.len(),
                    leaf.issuer()
                ),
            )
        };
    };
    match leaf.verify_signature(Some(signer.public_key())) {
        Ok(()) => Check::ok(
            name,
            format!("{shown}: {} signs the certificate", signer.subject()),
        ),
        Err(X509Error::SignatureUnsupportedAlgorithm) => Check::warn(
            name,
            format!(
                "{shown}: the certificate's signature algorithm cannot be verified here ({})",
                leaf.signature_algorithm.algorithm
            ),
            "nothing to do if the connection works; the TLS handshake verifies it too",
        ),
        Err(e) => Check::fail(
            name,
            format!(
                "{shown}: {} is named as issuer but its key did not sign the certificate ({e})",
                signer.subject()
            ),
            format!(
                "{} and {} are from different PKIs (a CA re-created with the same name?): use \
                 the CA that issued the certificate",
                id.ca_key, id.cert_key
            ),
        ),
    }
}

/// The certificate's dates against the clock: FAIL outside them, WARN within
/// [`EXPIRY_WARN_DAYS`] of the end.
fn validity(
    name: &str,
    key: &str,
    path: &Path,
    cert: &X509Certificate<'_>,
    is_leaf: bool,
) -> Check {
    let shown = format!("{key} {}", path.display());
    let v = cert.validity();
    let now = ASN1Time::now();
    let renew = if is_leaf {
        "renew it (AWS IoT: create a certificate for the core thing, attach its policy) and restart"
    } else {
        "replace it with the CA's current certificate"
    };
    if now < v.not_before {
        return Check::fail(
            name,
            format!("{shown}: not valid before {} (now {now})", v.not_before),
            "set the clock (NTP; see `clock`), or use a certificate whose validity has begun",
        );
    }
    if now > v.not_after {
        return Check::fail(name, format!("{shown}: expired on {}", v.not_after), renew);
    }
    let left = (v.not_after.timestamp() - now.timestamp()) / DAY_SECS;
    if left < EXPIRY_WARN_DAYS {
        return Check::warn(
            name,
            format!("{shown}: expires on {} (in {left} days)", v.not_after),
            renew,
        );
    }
    Check::ok(
        name,
        format!("{shown}: {}, valid until {}", cert.subject(), v.not_after),
    )
}

fn unreadable_hint(key: &str) -> String {
    format!(
        "put the file there or fix {key} (a relative path is under <root>/certs); the runtime's \
         user must be able to read it"
    )
}

/// Every PEM certificate of a file; an error says why there is none.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| describe_io(&e))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| describe_io(&e))?;
    match rustls_pemfile::private_key(&mut &data[..]) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err("no PEM private key in the file".into()),
        Err(e) => Err(format!("not PEM: {e}")),
    }
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "missing".into(),
        std::io::ErrorKind::PermissionDenied => "not readable (permission denied)".into(),
        _ => format!("cannot read: {e}"),
    }
}
