//! `eg-modbus-tcp-slave`: a real Modbus TCP slave on loopback for the
//! Modbus-TCP connector's tests and bench (tokio-modbus's server, see
//! `evergreen_connector_modbus_tcp::slave`).
//!
//! `eg-modbus-tcp-slave [--port N] [--data JSON | --data @FILE]` binds
//! `127.0.0.1:N` (port 0, the default, lets the kernel choose), prints
//! `listening 127.0.0.1:<port>` on stdout, then reads commands on stdin:
//! `stats` prints the request counters as one JSON line. It exits at the end
//! of stdin, so it never outlives the test that started it.

use std::io::Write;
use std::process::ExitCode;

use evergreen_connector_modbus_tcp::slave::{Data, Slave};
use tokio::io::AsyncBufReadExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-modbus-tcp-slave: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut port = 0u16;
    let mut data = Data::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--port" => port = value.parse().map_err(|e| format!("--port {value}: {e}"))?,
            "--data" => {
                let text = match value.strip_prefix('@') {
                    Some(file) => std::fs::read_to_string(file)
                        .map_err(|e| format!("cannot read {file}: {e}"))?,
                    None => value,
                };
                data = serde_json::from_str(&text).map_err(|e| format!("--data: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1:{port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let slave = Slave::new(&data);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening {addr}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let serving = {
        let slave = slave.clone();
        tokio::spawn(async move { slave.serve(listener).await })
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "stats" {
            writeln!(stdout, "{}", slave.counters.to_json())
                .and_then(|()| stdout.flush())
                .map_err(|e| e.to_string())?;
        }
    }
    serving.abort();
    Ok(())
}
