//! The network checks of `evergreen check`: the ports the runtime listens on (a bind test on
//! each configured address, released at once) and the upstream endpoint (DNS, TCP connect, TLS
//! handshake with the core's certificate, each bounded by `--timeout-secs`). The handshake uses
//! the cloud bridge's own TLS settings and stops there: no MQTT CONNECT, so a running
//! runtime's session (same client id) is never taken over.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use evergreen_config::CoreConfig;

use super::{Check, Needs};

/// After a TLS 1.3 handshake the server judges the client's certificate when it has already
/// "finished": a refusal arrives as an alert right after. Wait this long (at most) for it.
const ALERT_WAIT: Duration = Duration::from_secs(1);

/// A runtime answering on this root's control socket, and what it said.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) socket: std::path::PathBuf,
}

/// Whether a runtime answers on the configuration's control socket: then the ports it holds
/// are its own, not a conflict.
pub(crate) fn runtime_running(cfg: &CoreConfig) -> Option<Running> {
    let socket = cfg.control_socket();
    let mut client =
        evergreen_ops::control::Client::connect(&socket, Duration::from_secs(2)).ok()?;
    client
        .call(&evergreen_ops::control::Request::Status)
        .ok()
        .map(|_| Running { socket })
}

/// `port <listener>` for the local MQTT server's listeners and the Lambda endpoint.
pub(crate) fn check_ports(
    cfg: &CoreConfig,
    needs: &Needs,
    running: Option<&Running>,
    checks: &mut Vec<Check>,
) {
    let setup = evergreen_mqtt::Setup::from_config(cfg);
    if setup.tls_enabled() {
        checks.push(port(
            "port mqttTls",
            "evergreen.listeners.mqttTls",
            setup.tls_addr(),
            needs.devices,
            running,
        ));
    }
    if let Some(addr) = setup.plain_addr() {
        checks.push(port(
            "port mqttPlain",
            "evergreen.listeners.mqttPlain",
            addr,
            true,
            running,
        ));
    }
    let lambda = SocketAddr::from(([127, 0, 0, 1], cfg.core_thing.gg_daemon_port));
    checks.push(port(
        "port Lambda endpoint",
        "coreThing.ggDaemonPort",
        lambda,
        needs.lambda,
        running,
    ));
}

/// A bind test on `addr`. A busy port is OK when this root's runtime runs (it is holding it),
/// a warning when nothing needs the listener, and a failure otherwise.
fn port(name: &str, key: &str, addr: SocketAddr, needed: bool, running: Option<&Running>) -> Check {
    if addr.port() == 0 {
        return Check::ok(
            name,
            format!("{addr} ({key}): port 0, any free port is taken"),
        );
    }
    let e = match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            return Check::ok(name, format!("{addr} ({key}): free"));
        }
        Err(e) => e,
    };
    if let Some(r) = running {
        return Check::ok(
            name,
            format!(
                "{addr} ({key}): in use, by the Evergreen running on this root (its control \
                 socket {} answers)",
                r.socket.display()
            ),
        );
    }
    let detail = format!("{addr} ({key}): cannot bind: {e}");
    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "another program holds the port (`ss -ltnp 'sport = :{}'` names it): stop it or \
             change {key}",
            addr.port()
        )
    } else {
        format!("use an address of this host in {key}")
    };
    if needed {
        Check::fail(name, detail, hint)
    } else {
        Check::warn(name, format!("{detail}; this group does not need it"), hint)
    }
}

/// `upstream DNS`, `upstream TCP` and `upstream TLS` for `coreThing.iotHost`; stops at the first
/// step that fails.
pub(crate) fn check_upstream(cfg: &CoreConfig, timeout: Duration, checks: &mut Vec<Check>) {
    let Some(host) = cfg.core_thing.iot_host.clone() else {
        checks.push(Check::ok(
            "upstream",
            "not configured: no coreThing.iotHost",
        ));
        return;
    };
    let port = cfg.core_thing.iot_mqtt_port;
    let endpoint = format!("{host}:{port}");
    let addrs = match resolve(&host, port, timeout) {
        Ok(addrs) => {
            let shown: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            checks.push(Check::ok(
                "upstream DNS",
                format!("{host} resolves to {}", shown.join(", ")),
            ));
            addrs
        }
        Err(why) => {
            checks.push(Check::fail(
                "upstream DNS",
                format!("{host} (coreThing.iotHost): {why}"),
                "check the name (AWS IoT: `aws iot describe-endpoint --endpoint-type \
                 iot:Data-ATS`) and this host's DNS (/etc/resolv.conf)",
            ));
            return;
        }
    };
    let stream = match connect(&addrs, timeout) {
        Ok(stream) => {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| endpoint.clone(), |a| a.to_string());
            checks.push(Check::ok("upstream TCP", format!("connected to {peer}")));
            stream
        }
        Err(why) => {
            checks.push(Check::fail(
                "upstream TCP",
                // Each address tried names itself.
                format!("cannot connect: {why}"),
                format!(
                    "check coreThing.iotMqttPort ({port}; AWS IoT: 8883, or 443 where 8883 is \
                     blocked) and that a firewall or proxy lets this host out"
                ),
            ));
            return;
        }
    };
    if !cfg.evergreen.cloud_tls {
        checks.push(Check::ok(
            "upstream TLS",
            "not used: evergreen.cloudTls is false (plain TCP)",
        ));
        return;
    }
    let (Some(ca), Some(cert), Some(key)) = (cfg.ca_path(), cfg.cert_path(), cfg.key_path()) else {
        checks.push(Check::fail(
            "upstream TLS",
            "not tried: coreThing.caPath, certPath and keyPath are needed",
            "set the three files (see the cloud certificate lines)",
        ));
        return;
    };
    let files = evergreen_cloud::bridge::TlsFiles { ca, cert, key };
    let config = match evergreen_cloud::bridge::tls_config(&files, port) {
        Ok(config) => config,
        Err(e) => {
            checks.push(Check::fail(
                "upstream TLS",
                format!("not tried: {e}"),
                "fix the files named (see the cloud certificate lines)",
            ));
            return;
        }
    };
    checks.push(match handshake(stream, &host, config, timeout) {
        Ok(version) => Check::ok(
            "upstream TLS",
            format!(
                "{endpoint}: handshake with the core's certificate accepted ({version}); the \
                 server's certificate verifies against coreThing.caPath"
            ),
        ),
        Err(why) => Check::fail(
            "upstream TLS",
            format!("{endpoint}: {why}"),
            "an unknown issuer means coreThing.caPath is not the server's CA (AWS IoT: \
             AmazonRootCA1.pem); a refused certificate means the endpoint does not know the \
             core's (AWS IoT: register and activate it, attach the policy; check the region)",
        ),
    });
}

/// Resolves in a thread, so a hanging resolver is bounded by `timeout` too.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = (host.to_string(), port);
    std::thread::Builder::new()
        .name("check-dns".into())
        .spawn(move || {
            let _ = tx.send(target.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| format!("cannot start the resolver thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err("resolves to no address".into()),
        Ok(Err(e)) => Err(format!("does not resolve: {e}")),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f32())),
    }
}

/// The first address that accepts within `timeout`; the error lists each refusal.
fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut errors = Vec::new();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                errors.push(format!(
                    "{addr}: no answer within {} s",
                    timeout.as_secs_f32()
                ));
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// A TLS handshake over `stream` with the bridge's settings; the negotiated version on success.
fn handshake(
    mut stream: TcpStream,
    host: &str,
    config: rustls::ClientConfig,
    timeout: Duration,
) -> Result<String, String> {
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a valid TLS server name: {e}"))?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let io_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!(
                "TLS handshake: no answer within {} s",
                timeout.as_secs_f32()
            )
        }
        _ => format!("TLS handshake: {e}"),
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(io_err)?;
    let deadline = std::time::Instant::now() + timeout;
    while tls.is_handshaking() {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "TLS handshake: not done within {} s",
                timeout.as_secs_f32()
            ));
        }
        match tls.complete_io(&mut stream) {
            Ok((0, 0)) if tls.is_handshaking() => {
                return Err("TLS handshake: the server closed the connection".into())
            }
            Ok(_) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let negotiated = tls.protocol_version();
    let version = negotiated.map_or_else(|| "TLS".to_string(), |v| format!("{v:?}"));
    // Flush our Finished (and certificate), then give the server the moment it needs to
    // refuse the certificate with an alert (TLS 1.3 does that after the handshake).
    while tls.wants_write() {
        tls.write_tls(&mut stream).map_err(io_err)?;
    }
    stream.flush().map_err(io_err)?;
    // TLS 1.2: the server judged the certificate before its Finished; nothing more to wait for.
    if negotiated == Some(rustls::ProtocolVersion::TLSv1_2) {
        return Ok(version);
    }
    stream
        .set_read_timeout(Some(ALERT_WAIT.min(timeout)))
        .map_err(io_err)?;
    let mut buf = [0u8; 512];
    loop {
        match tls.read_tls(&mut stream) {
            Ok(0) => return Err("the server closed the connection after the handshake (it refused the core's certificate?)".into()),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    return Err(format!("refused after the handshake: {e}"));
                }
                // Session tickets and the like: no application data is expected.
                let _ = tls.reader().read(&mut buf);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(version)
            }
            Err(e) => return Err(format!("after the handshake: {e}")),
        }
    }
}
