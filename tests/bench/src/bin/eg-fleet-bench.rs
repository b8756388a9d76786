//! `eg-fleet-bench`: a fleet rollout end to end. For each fleet size it starts a mosquitto and
//! that many `evergreen run` gateways (own roots, one fleet group), makes a bundle with the CLI
//! (`group create-version`, `group export`), and times `evergreen fleet deploy --group` from its
//! start to its exit (every gateway reported `Success`). It reports the time, what each gateway
//! downloaded (the bundle file it stored) and the MQTT bytes the broker sent and received per
//! gateway during the rollout (mosquitto's `$SYS/broker/bytes/*`, published every second; this
//! includes the operator's own traffic and the gateways' status and health messages). It asserts
//! nothing.
//!
//! ```text
//! cargo build --release -p evergreen -p evergreen-tests -p evergreen-bench
//! target/release/eg-fleet-bench [--gateways 20,50] [--canary 2] [--batch 10]
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use evergreen_tests::broker::Mosquitto;
use evergreen_tests::fleet::{fleet, gateway_config, Operator};
use evergreen_tests::{group, mosquitto_or_skip, wait_for, Runtime};

/// Rolls one bundle out to fleets of each size, side by side.
#[derive(Debug, Parser)]
struct Args {
    /// Fleet sizes (gateways), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [20, 50])]
    gateways: Vec<usize>,
    /// Gateways in the canary stage.
    #[arg(long, default_value_t = 2)]
    canary: usize,
    /// Gateways per stage after it.
    #[arg(long, default_value_t = 10)]
    batch: usize,
}

/// One fleet size's figures.
struct Figures {
    gateways: usize,
    seconds: f64,
    exit: Option<i32>,
    stored_bytes: u64,
    document_bytes: usize,
    sent_per_gateway: Option<u64>,
    received_per_gateway: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if evergreen_bench::require_bin("evergreen").is_err() {
        eprintln!("eg-fleet-bench: build first: {}", evergreen_bench::BUILD);
        return ExitCode::FAILURE;
    }
    let Some(bin) = mosquitto_or_skip() else {
        return ExitCode::FAILURE;
    };
    let mut rows = Vec::new();
    for &n in &args.gateways {
        match run(&bin, n, &args) {
            Ok(f) => rows.push(f),
            Err(e) => {
                eprintln!("eg-fleet-bench: {n} gateways: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "\n| gateways | rollout to all Success, s | exit | bundle stored per gateway, B | document, B | MQTT sent / received by the broker per gateway, B |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for f in rows {
        let per = |v: Option<u64>| v.map_or("-".to_string(), |b| b.to_string());
        println!(
            "| {} | {:.1} | {} | {} | {} | {} / {} |",
            f.gateways,
            f.seconds,
            f.exit.map_or("-".into(), |c| c.to_string()),
            f.stored_bytes,
            f.document_bytes,
            per(f.sent_per_gateway),
            per(f.received_per_gateway)
        );
    }
    println!(
        "\ncanary {}, batches of {}; a debug or release build as built; the machine is shared, so run it twice.",
        args.canary, args.batch
    );
    ExitCode::SUCCESS
}

fn sys_counter(broker: &Mosquitto, name: &str) -> Option<u64> {
    let raw = broker.retained(&format!("$SYS/broker/bytes/{name}"))?;
    String::from_utf8_lossy(&raw).trim().parse().ok()
}

fn run(bin: &std::path::Path, n: usize, args: &Args) -> Result<Figures, String> {
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = evergreen_tests::free_port().ok_or("no free port")?;
    let broker = Mosquitto::start(bin, state.path(), port);
    let op = Operator::new();
    eprintln!("eg-fleet-bench: starting {n} gateways");
    let gateways: Vec<(String, Runtime)> = (1..=n)
        .map(|i| {
            let thing = format!("gw-{i:03}");
            let patch =
                evergreen_bench::with_free_ports(&gateway_config(&broker, &thing, &op.public))?;
            Ok((
                thing,
                Runtime::start_config(&group(vec![], vec![]), &patch, &[]),
            ))
        })
        .collect::<Result<_, String>>()?;
    for (thing, _) in &gateways {
        wait_for(Duration::from_secs(120), || {
            broker.retained(&format!("evergreen/fleet/things/{thing}/health"))
        })
        .ok_or_else(|| format!("{thing} published no health within 120 s"))?;
    }
    let (bundle, _id) = op.bundle("sleeper", "sleeper");
    let url = format!("file://{}", bundle.display());
    let document_bytes = op.sign(&bundle, 1, &["--things", "gw-001"]).len();
    // The counters are published every second: let the start-up traffic settle into them.
    std::thread::sleep(Duration::from_millis(1500));
    let sent_before = sys_counter(&broker, "sent");
    let received_before = sys_counter(&broker, "received");
    let broker_url = format!("mqtt://127.0.0.1:{port}");
    let canary = args.canary.to_string();
    let batch = args.batch.to_string();
    let b = bundle.display().to_string();
    let key = op.key.display().to_string();
    let started = Instant::now();
    let out = fleet(&[
        "deploy",
        &b,
        "--key",
        &key,
        "--fleet",
        "bench",
        "--url",
        &url,
        "--group",
        "line-1",
        "--canary",
        &canary,
        "--batch",
        &batch,
        "--stage-timeout-secs",
        "300",
        "--broker",
        &broker_url,
    ]);
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let delta = |after: Option<u64>, before: Option<u64>| {
        Some(after?.checked_sub(before?)? / u64::try_from(n).ok()?.max(1))
    };
    let sent_per_gateway = delta(sys_counter(&broker, "sent"), sent_before);
    let received_per_gateway = delta(sys_counter(&broker, "received"), received_before);
    let stored_bytes = gateways
        .iter()
        .filter_map(|(_, rt)| {
            let dir = rt.dir.path().join("root/fleet/downloads");
            let entries = std::fs::read_dir(dir).ok()?;
            Some(
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>(),
            )
        })
        .max()
        .unwrap_or(0);
    Ok(Figures {
        gateways: n,
        seconds,
        exit: out.status.code(),
        stored_bytes,
        document_bytes,
        sent_per_gateway,
        received_per_gateway,
    })
}
