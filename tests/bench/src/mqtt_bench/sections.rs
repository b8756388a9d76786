//! The sections of `eg-mqtt-bench` and their tables: which cases each runs, the plan each
//! broker is started with, and how an outcome becomes cells. Each section starts every broker
//! afresh (a clean baseline for its resident size), runs all its cases on it, stops it, and
//! then prints one table with a column per broker.

use std::time::Duration;

use super::broker::{Broker, Kind, Plan, Programs, EVERGREEN_MAX_DEVICES};
use super::idle::{run_idle, Idle};
use super::run::{run_case, Case, Outcome, Pace, PubSpec, Reconnect, SubSpec};
use super::table::{thousands, Table};
use super::tally::percentiles;
use crate::mqtt::Version;

/// What a run was asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    /// The brokers to run, in column order (those that could not be found already left out).
    pub brokers: Vec<Kind>,
    pub programs: Programs,
    /// Flood cases: only this many pairs / this QoS; messages per publisher.
    pub pairs: Option<u32>,
    pub qos: Option<u8>,
    pub count: Option<u32>,
    /// Messages per connection in the burst section.
    pub burst: u32,
    pub p2p_pairs: u32,
    pub p2p_secs: u32,
    pub fanout_subs: u32,
    pub fanout_rate: u32,
    pub fanout_secs: u32,
    pub idle: usize,
    /// Print Evergreen's MQTT counters after each section.
    pub log: bool,
}

/// One flood case: `pairs` publishers, publisher i → subscriber i on `bench/i`.
#[derive(Debug, Clone, Copy)]
struct Flood {
    pairs: u32,
    qos: u8,
    publisher: Version,
    subscriber: Version,
    count: u32,
}

impl Flood {
    fn label(&self) -> String {
        format!(
            "{p}→{p} QoS {q} {a}→{b}",
            p = self.pairs,
            q = self.qos,
            a = self.publisher.label(),
            b = self.subscriber.label()
        )
    }

    fn case(&self, pace: Pace, limit: Duration) -> Case {
        let (subs, pubs) = pairs(
            self.pairs,
            self.qos,
            self.publisher,
            self.subscriber,
            self.count,
        );
        Case {
            subs,
            pubs,
            pace,
            payload: 64,
            limit,
        }
    }
}

/// Publisher i → subscriber i on `bench/i`, for i < n.
fn pairs(n: u32, qos: u8, pv: Version, sv: Version, count: u32) -> (Vec<SubSpec>, Vec<PubSpec>) {
    let subs = (0..n)
        .map(|i| SubSpec {
            index: i,
            client_id: format!("sub-{i}"),
            filter: format!("bench/{i}"),
            version: sv,
            qos,
            sources: vec![i],
        })
        .collect();
    let pubs = (0..n)
        .map(|i| PubSpec {
            index: i,
            client_id: format!("pub-{i}"),
            topic: format!("bench/{i}"),
            version: pv,
            qos,
            count,
        })
        .collect();
    (subs, pubs)
}

fn pairs_plan(n: u32) -> Plan {
    Plan {
        devices: (0..n)
            .flat_map(|i| [format!("pub-{i}"), format!("sub-{i}")])
            .collect(),
        routes: (0..n)
            .map(|i| (format!("pub-{i}"), format!("bench/{i}"), format!("sub-{i}")))
            .collect(),
        max_connections: 2 * n as usize,
    }
}

fn flood_cases(s: &Settings) -> Vec<Flood> {
    let versions = [
        (Version::V3, Version::V3),
        (Version::V3, Version::V5),
        (Version::V5, Version::V5),
    ];
    let mut out = Vec::new();
    for pairs in [1u32, 10] {
        for qos in [0u8, 1] {
            if s.pairs.is_some_and(|p| p != pairs) || s.qos.is_some_and(|q| q != qos) {
                continue;
            }
            // QoS 0 floods are cheap per message; 10 pairs share the total of one.
            let base = if qos == 0 { 50_000 } else { 10_000 };
            let mut count = if pairs == 1 { base } else { base / 5 };
            if s.quick {
                count /= 10;
            }
            let count = s.count.unwrap_or(count);
            for (publisher, subscriber) in versions {
                out.push(Flood {
                    pairs,
                    qos,
                    publisher,
                    subscriber,
                    count,
                });
            }
        }
    }
    out
}

/// The cells of a case: one row per measure.
struct Cells {
    rate: String,
    latency: String,
    faults: String,
    cpu: String,
    rss: String,
}

fn cells(o: &mut Outcome) -> Cells {
    let received = o.tally.received();
    let rate = if o.secs > 0.0 {
        thousands((received as f64 / o.secs) as u64)
    } else {
        "-".into()
    };
    let latency = match percentiles(&mut o.tally.latencies_us) {
        Some([a, b, c]) => format!("{} / {} / {}", thousands(a), thousands(b), thousands(c)),
        None => "-".into(),
    };
    let errors = if o.errors.is_empty() { "" } else { " (errors)" };
    let faults = format!(
        "{} / {} / {}{errors}",
        o.lost,
        o.tally.duplicates(),
        o.tally.reordered()
    );
    let cpu = if o.tally.arrivals > 0 {
        let us = o.cpu_ns as f64 / 1e3 / o.tally.arrivals as f64;
        format!("{us:.2}")
    } else {
        "-".into()
    };
    let rss = format!(
        "{:.1} / {:.1}",
        o.rss_start_kib as f64 / 1024.0,
        o.rss_peak_kib as f64 / 1024.0
    );
    Cells {
        rate,
        latency,
        faults,
        cpu,
        rss,
    }
}

/// Runs `cases` on every broker; one [`Cells`] per case per broker (None: did not run).
fn run_cases(
    rt: &tokio::runtime::Runtime,
    s: &Settings,
    plan: &Plan,
    cases: &[(String, Case)],
    notes: &mut Vec<String>,
) -> Vec<Vec<Option<Cells>>> {
    let mut grid: Vec<Vec<Option<Cells>>> = cases.iter().map(|_| Vec::new()).collect();
    for kind in &s.brokers {
        let broker = match Broker::start(*kind, plan, &s.programs) {
            Ok(b) => Some(b),
            Err(e) => {
                notes.push(format!("{}: not started: {e}", kind.name()));
                None
            }
        };
        for (i, (label, case)) in cases.iter().enumerate() {
            let Some(broker) = &broker else {
                grid[i].push(None);
                continue;
            };
            eprintln!("eg-mqtt-bench: {} {label}", kind.name());
            match rt.block_on(run_case(broker, case.clone())) {
                Ok(mut o) => {
                    for e in o.errors.iter().take(3) {
                        notes.push(format!("{}, {label}: {e}", kind.name()));
                    }
                    if o.errors.len() > 3 {
                        notes.push(format!(
                            "{}, {label}: … {} more errors",
                            kind.name(),
                            o.errors.len() - 3
                        ));
                    }
                    if o.tally.strays > 0 {
                        notes.push(format!(
                            "{}, {label}: {} messages without a bench stamp",
                            kind.name(),
                            o.tally.strays
                        ));
                    }
                    grid[i].push(Some(cells(&mut o)));
                }
                Err(e) => {
                    notes.push(format!("{}, {label}: could not start: {e}", kind.name()));
                    grid[i].push(None);
                }
            }
            // Let the case's connections close before the next one opens its own.
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Some(broker) = &broker {
            if s.log {
                for line in broker.log_lines() {
                    notes.push(format!("{} log: {line}", kind.name()));
                }
            }
        }
    }
    grid
}

fn broker_names(s: &Settings) -> Vec<&'static str> {
    s.brokers.iter().map(|k| k.name()).collect()
}

fn column(grid_row: &[Option<Cells>], pick: impl Fn(&Cells) -> String) -> Vec<String> {
    let mut out = vec![];
    for c in grid_row {
        out.push(c.as_ref().map_or("not run".into(), &pick));
    }
    out
}

fn print(table: &Table, notes: &[String]) {
    print!("{}", table.render());
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("- {n}");
        }
    }
}

/// The flood cases: connected publishers (`burst` None) or publishers that disconnect after
/// every `burst` messages and reconnect as `reconnect` says.
pub fn flood(rt: &tokio::runtime::Runtime, s: &Settings, burst: Option<u32>, reconnect: Reconnect) {
    let limit = Duration::from_secs(if s.quick { 60 } else { 120 });
    let pace = Pace::Flood { burst, reconnect };
    let cases: Vec<(String, Case)> = flood_cases(s)
        .iter()
        .map(|f| (f.label(), f.case(pace, limit)))
        .collect();
    let mut notes = Vec::new();
    let grid = run_cases(rt, s, &pairs_plan(10), &cases, &mut notes);
    let title = match (burst, reconnect) {
        (None, _) => "Publishers flood and stay connected (64 B payloads)".to_string(),
        (Some(b), Reconnect::AfterClose) => format!(
            "Publishers send {b} messages per connection, disconnect right after the last, \
             reconnect once the broker closed (64 B)"
        ),
        (Some(b), Reconnect::AtOnce) => format!(
            "Publishers send {b} messages per connection, disconnect right after the last, \
             reconnect at once: a takeover (64 B)"
        ),
    };
    let mut columns = vec!["measure"];
    columns.extend(broker_names(s));
    let mut table = Table::new(&title, "case", &columns);
    for ((label, _), row) in cases.iter().zip(&grid) {
        add_rows(&mut table, label, row, "msg/s received", false);
    }
    print(&table, &notes);
}

fn add_rows(table: &mut Table, label: &str, row: &[Option<Cells>], rate: &str, rss: bool) {
    let mut add = |first: &str, measure: &str, pick: &dyn Fn(&Cells) -> String| {
        let mut cells = vec![measure.to_string()];
        cells.extend(column(row, pick));
        table.row(first, cells);
    };
    add(label, rate, &|c| c.rate.clone());
    add("", "latency p50 / p95 / p99 µs", &|c| c.latency.clone());
    add("", "lost / duplicated / reordered", &|c| c.faults.clone());
    add("", "broker CPU µs per delivered msg", &|c| c.cpu.clone());
    if rss {
        add("", "broker RSS before publishing / peak MiB", &|c| {
            c.rss.clone()
        });
    }
}

/// Point-to-point: `p2p_pairs` publishers → as many subscribers, one QoS 1 message of 16 B per
/// second each.
pub fn p2p(rt: &tokio::runtime::Runtime, s: &Settings) {
    let n = s.p2p_pairs;
    let (subs, pubs) = pairs(n, 1, Version::V3, Version::V3, s.p2p_secs);
    let case = Case {
        subs,
        pubs,
        pace: Pace::Rate {
            interval: Duration::from_secs(1),
        },
        payload: 16,
        limit: Duration::from_secs(u64::from(s.p2p_secs) + 60),
    };
    let label = format!("{n}→{n} QoS 1, 1 msg/s each, {} s", s.p2p_secs);
    let mut notes = Vec::new();
    let grid = run_cases(rt, s, &pairs_plan(n), &[(label.clone(), case)], &mut notes);
    let mut columns = vec!["measure"];
    columns.extend(broker_names(s));
    let mut table = Table::new(
        "Point-to-point: each publisher to its own subscriber (16 B, QoS 1)",
        "case",
        &columns,
    );
    add_rows(&mut table, &label, &grid[0], "msg/s received", true);
    print(&table, &notes);
}

/// Fan-out: one publisher → `fanout_subs` subscribers of one topic, QoS 1, 16 B, at
/// `fanout_rate` messages per second.
pub fn fanout(rt: &tokio::runtime::Runtime, s: &Settings) {
    let n = s.fanout_subs;
    let subs = (0..n)
        .map(|i| SubSpec {
            index: i,
            client_id: format!("sub-{i}"),
            filter: "bench/fan".into(),
            version: Version::V3,
            qos: 1,
            sources: vec![0],
        })
        .collect();
    let pubs = vec![PubSpec {
        index: 0,
        client_id: "fan-pub".into(),
        topic: "bench/fan".into(),
        version: Version::V3,
        qos: 1,
        count: s.fanout_rate * s.fanout_secs,
    }];
    let case = Case {
        subs,
        pubs,
        pace: Pace::Rate {
            interval: Duration::from_secs(1) / s.fanout_rate.max(1),
        },
        payload: 16,
        limit: Duration::from_secs(u64::from(s.fanout_secs) + 60),
    };
    let plan = Plan {
        devices: std::iter::once("fan-pub".to_string())
            .chain((0..n).map(|i| format!("sub-{i}")))
            .collect(),
        routes: (0..n)
            .map(|i| ("fan-pub".into(), "bench/fan".into(), format!("sub-{i}")))
            .collect(),
        max_connections: n as usize + 1,
    };
    let label = format!("1→{n} QoS 1, {} msg/s, {} s", s.fanout_rate, s.fanout_secs);
    let mut notes = Vec::new();
    let grid = run_cases(rt, s, &plan, &[(label.clone(), case)], &mut notes);
    let mut columns = vec!["measure"];
    columns.extend(broker_names(s));
    let mut table = Table::new(
        "Fan-out: one publisher to every subscriber of its topic (16 B, QoS 1)",
        "case",
        &columns,
    );
    add_rows(&mut table, &label, &grid[0], "deliveries/s", true);
    print(&table, &notes);
}

/// Idle devices: `idle` connections without traffic and the broker's memory for them.
/// Evergreen gets at most [`EVERGREEN_MAX_DEVICES`] (its group's limit); its resident size per
/// connection is still comparable, being a difference over the count.
pub fn idle(rt: &tokio::runtime::Runtime, s: &Settings) {
    let all: Vec<String> = (0..s.idle).map(|i| format!("idle-{i}")).collect();
    let limit = Duration::from_secs(120);
    let mut notes = Vec::new();
    let mut results: Vec<Option<Idle>> = Vec::new();
    for kind in &s.brokers {
        let ids = match kind {
            Kind::Evergreen if all.len() > EVERGREEN_MAX_DEVICES => {
                notes.push(format!(
                    "evergreen: {} devices, the most a group may have (Greengrass V1's limit)",
                    thousands(EVERGREEN_MAX_DEVICES as u64)
                ));
                &all[..EVERGREEN_MAX_DEVICES]
            }
            _ => &all[..],
        };
        let plan = Plan {
            devices: ids.to_vec(),
            routes: Vec::new(),
            max_connections: ids.len(),
        };
        eprintln!(
            "eg-mqtt-bench: {} {} idle connections",
            kind.name(),
            ids.len()
        );
        match Broker::start(*kind, &plan, &s.programs) {
            Ok(broker) => {
                let r = rt.block_on(run_idle(&broker, ids, limit));
                for e in &r.errors {
                    notes.push(format!("{}: {e}", kind.name()));
                }
                results.push(Some(r));
            }
            Err(e) => {
                notes.push(format!("{}: not started: {e}", kind.name()));
                results.push(None);
            }
        }
    }
    let mut table = Table::new(
        &format!(
            "{} idle connected devices (MQTT 3.1.1)",
            thousands(s.idle as u64)
        ),
        "measure",
        &broker_names(s),
    );
    let mut add = |label: &str, pick: &dyn Fn(&mut Idle) -> String| {
        let cells = results
            .iter_mut()
            .map(|r| r.as_mut().map_or("not run".into(), pick))
            .collect();
        table.row(label, cells);
    };
    add("connected", &|r| {
        format!(
            "{} / {}",
            thousands(r.connected as u64),
            thousands(r.wanted as u64)
        )
    });
    add(
        "connect p50 / p95 / p99 µs",
        &|r| match percentiles(&mut r.connect_us) {
            Some([a, b, c]) => format!("{} / {} / {}", thousands(a), thousands(b), thousands(c)),
            None => "-".into(),
        },
    );
    add("time to connect all, s", &|r| format!("{:.2}", r.secs));
    add("broker RSS, no connection, MiB", &|r| {
        format!("{:.1}", r.rss_before_kib as f64 / 1024.0)
    });
    add("broker RSS, all connected, MiB", &|r| {
        format!("{:.1}", r.rss_after_kib as f64 / 1024.0)
    });
    add("RSS per idle connection, KiB", &|r| {
        r.per_connection_kib()
            .map_or("-".into(), |k| format!("{k:.2}"))
    });
    print(&table, &notes);
}
