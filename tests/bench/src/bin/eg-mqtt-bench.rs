//! `eg-mqtt-bench`: device → device messages through Evergreen's local MQTT server, compared with
//! mosquitto and rumqttd on the same machine in the same run. The cases and brokers are in
//! `evergreen_bench::mqtt_bench`; this parses the command line, raises the open-file limit and
//! runs the sections asked for. It reports and asserts nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use evergreen_bench::mqtt_bench::broker::{find_program, rumqttd_hint, Kind, Programs};
use evergreen_bench::mqtt_bench::run::Reconnect;
use evergreen_bench::mqtt_bench::sections::{self, Settings};
use evergreen_bench::require_bin;

const ABOUT: &str =
    "Device -> device MQTT through Evergreen's local server, mosquitto and rumqttd in one run.";

const SECTIONS: &str = "\
Sections (all by default; --section picks some, in this order):
  flood    1->1 and 10->10 (publisher i -> subscriber i on bench/i), QoS 0 and 1, 64 B payloads,
           MQTT 3.1.1 -> 3.1.1, 3.1.1 -> 5 and 5 -> 5. Publishers send as fast as the connection
           takes them (QoS 1: 16 unacknowledged, fewer if the server's Receive Maximum says so)
           and stay connected until the subscribers are done.
  bursts   The same cases, but each publisher sends --burst messages per connection and sends
           DISCONNECT right after the last one (QoS 1: once it is acknowledged, as mosquitto_pub
           does) and closes its side; once the broker has closed the connection, it connects
           again with the same client id and goes on. What a broker drops at a disconnect shows
           as loss; a message of a later connection routed before one of an earlier one as
           reordered.
  takeover The burst cases with the next connection opened at once, without waiting for the
           broker to close the previous one: the new CONNECT with the same client id may take
           over a connection whose last messages the broker has not read yet (MQTT has the
           server close the old connection; whether what it sent before is kept differs).
  p2p      Point-to-point: --p2p-pairs publishers -> as many subscribers, 1 QoS 1 message of
           16 B per second each (phases spread over the second), for --p2p-secs.
  fanout   Fan-out: 1 publisher -> --fanout-subs subscribers of one topic, QoS 1, 16 B, at
           --fanout-rate messages per second for --fanout-secs.
  idle     --idle devices connect (3.1.1, clean session) and stay idle: connect time and the
           broker's resident size with none and with all of them connected, and the difference
           per connection. Evergreen takes at most 2,500 (a group's maximum, as in Greengrass
           V1); its per-connection figure is still comparable.

Every message carries its publisher, a sequence number and its send time. Per case:
  msg/s         distinct messages received / (last first arrival - first publish)
  latency       arrival - send time of each first arrival (one process, one clock)
  lost          written (QoS 0) or acknowledged (QoS 1) and never received
  duplicated    received more than once
  reordered     first arrivals of a sequence number lower than one already received from the
                same publisher (on its one topic)
  broker CPU    utime + stime of the broker's process and descendants over the case, per
                delivered message (duplicates included)
  broker RSS    at the start of the case and its peak (read every 250 ms)

Brokers: Evergreen (`evergreen run` next to this program, plain listener on port 0, a group
whose devices and subscriptions are exactly the section's; system logs at INFO), Debian
mosquitto (packaged defaults, one loopback listener, set_tcp_nodelay true as Evergreen's
sockets have it) and rumqttd (its sample configuration, v4 and v5 listeners on free loopback
ports; it has no TCP_NODELAY setting, so Nagle's delay is part of its latencies). Each section
starts each broker afresh. rumqttd is not built by the workspace: pass --rumqttd PATH or put it
on PATH; without it its column is left out, with a note.";

/// Device -> device MQTT through Evergreen, mosquitto and rumqttd.
#[derive(Debug, Parser)]
#[command(
    name = "eg-mqtt-bench",
    about = ABOUT,
    after_help = format!("{SECTIONS}\n\nBuild: {}", evergreen_bench::BUILD)
)]
struct Cli {
    /// A short run: a tenth of the flood messages, 5 s of p2p and fan-out, 2,000 idle devices.
    #[arg(long)]
    quick: bool,
    /// Run only these sections (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', value_parser = ["flood", "bursts", "takeover", "p2p", "fanout", "idle"])]
    section: Vec<String>,
    /// Run only these brokers (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', value_parser = ["evergreen", "mosquitto", "rumqttd"])]
    broker: Vec<String>,
    /// The rumqttd program (default: `rumqttd` on PATH).
    #[arg(long)]
    rumqttd: Option<PathBuf>,
    /// Flood, burst and takeover sections: only the cases with this many pairs (1 or 10).
    #[arg(long, value_parser = ["1", "10"])]
    pairs: Option<String>,
    /// Flood, burst and takeover sections: only the cases at this QoS (0 or 1).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Option<u8>,
    /// Flood, burst and takeover sections: messages per publisher (overrides the defaults and --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    count: Option<u32>,
    /// Burst and takeover sections: messages per connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
    /// Point-to-point: publisher -> subscriber pairs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    p2p_pairs: u32,
    /// Point-to-point: seconds (= messages per publisher); default 30, 5 with --quick.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=600))]
    p2p_secs: Option<u32>,
    /// Fan-out: subscribers.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    fanout_subs: u32,
    /// Fan-out: messages per second from the publisher.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    fanout_rate: u32,
    /// Fan-out: seconds; default 20, 5 with --quick.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=600))]
    fanout_secs: Option<u32>,
    /// Idle devices; default 10,000, 2,000 with --quick (lowered to what the open-file limit
    /// allows, with a note).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    idle: Option<u32>,
    /// Print Evergreen's MQTT counters and warnings after each section.
    #[arg(long)]
    log: bool,
}

/// Raises this process's open-file limit to its hard limit (the brokers it starts inherit it,
/// so all three get the same); returns the limit now in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eg-mqtt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    require_bin("evergreen")?;
    let quick = cli.quick;
    let nofile = raise_nofile();
    let mut idle = cli
        .idle
        .map_or(if quick { 2_000 } else { 10_000 }, |n| n as usize);
    // Each idle device is one descriptor here and one in the broker; 200 for everything else.
    let room = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(200);
    if idle > room {
        println!(
            "NOTE: the open-file limit is {nofile} (hard limit reached): {idle} idle devices \
             lowered to {room}. Raise the hard limit (ulimit -Hn) for the full scenario."
        );
        idle = room;
    }
    let wanted = |name: &str| cli.broker.is_empty() || cli.broker.iter().any(|b| b == name);
    let mut programs = Programs::default();
    let mut brokers = Vec::new();
    if wanted("evergreen") {
        brokers.push(Kind::Evergreen);
    }
    if wanted("mosquitto") {
        programs.mosquitto = find_program("mosquitto");
        match programs.mosquitto {
            Some(_) => brokers.push(Kind::Mosquitto),
            None => println!(
                "NOTE: mosquitto is not installed (Debian mosquitto; .ci/run installs it): its column is left out."
            ),
        }
    }
    if wanted("rumqttd") {
        programs.rumqttd = match &cli.rumqttd {
            Some(p) if p.is_file() => Some(p.clone()),
            Some(p) => return Err(format!("--rumqttd {}: no such file", p.display())),
            None => find_program("rumqttd"),
        };
        match programs.rumqttd {
            Some(_) => brokers.push(Kind::Rumqttd),
            None => println!(
                "NOTE: rumqttd not found: its column is left out. To compare with it, {}.",
                rumqttd_hint()
            ),
        }
    }
    let settings = Settings {
        quick,
        brokers,
        programs,
        pairs: cli.pairs.as_deref().and_then(|p| p.parse().ok()),
        qos: cli.qos,
        count: cli.count,
        burst: cli.burst,
        p2p_pairs: cli.p2p_pairs,
        p2p_secs: cli.p2p_secs.unwrap_or(if quick { 5 } else { 30 }),
        fanout_subs: cli.fanout_subs,
        fanout_rate: cli.fanout_rate,
        fanout_secs: cli.fanout_secs.unwrap_or(if quick { 5 } else { 20 }),
        idle,
        log: cli.log,
    };
    // Two workers: the machine's cores are shared with the broker under test, the same for all.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let section = |name: &str| cli.section.is_empty() || cli.section.iter().any(|s| s == name);
    println!(
        "eg-mqtt-bench: plain TCP on loopback for every broker; open-file limit {nofile}{}",
        if quick { "; --quick" } else { "" }
    );
    if section("flood") {
        sections::flood(&rt, &settings, None, Reconnect::AfterClose);
    }
    if section("bursts") {
        sections::flood(&rt, &settings, Some(settings.burst), Reconnect::AfterClose);
    }
    if section("takeover") {
        sections::flood(&rt, &settings, Some(settings.burst), Reconnect::AtOnce);
    }
    if section("p2p") {
        sections::p2p(&rt, &settings);
    }
    if section("fanout") {
        sections::fanout(&rt, &settings);
    }
    if section("idle") {
        sections::idle(&rt, &settings);
    }
    Ok(())
}
