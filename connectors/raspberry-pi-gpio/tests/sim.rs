//! The connector's logic end to end against the simulated chip: requested
//! lines, V1's read/write/state/error topics and payloads, and input
//! changes in event mode and in polling mode.

mod common;

use std::time::{Duration, Instant};

use common::*;
use evergreen_connector_raspberry_pi_gpio::chip::{LineConfig, Pull};
use evergreen_connector_raspberry_pi_gpio::sim::SimChip;
use evergreen_ipc::LogLevel;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(60);

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("JSON")
}

#[test]
fn lines_are_requested_with_their_pull_and_initial_level() {
    let (chip, sim) = SimChip::new(54, true);
    let run = start(
        Box::new(chip),
        settings(&[("InputGpios", "5,6U,7D"), ("OutputGpios", "8H,9,27L")]),
    );
    assert_eq!(
        sim.requested(),
        vec![
            LineConfig::Input {
                offset: 5,
                pull: Pull::None
            },
            LineConfig::Input {
                offset: 6,
                pull: Pull::Up
            },
            LineConfig::Input {
                offset: 7,
                pull: Pull::Down
            },
            LineConfig::Output {
                offset: 8,
                initial: true
            },
            LineConfig::Output {
                offset: 9,
                initial: false
            },
            LineConfig::Output {
                offset: 27,
                initial: false
            },
        ]
    );
    assert_eq!(sim.level(8), Some(true));
    assert_eq!(sim.level(27), Some(false));
    let logs = run.stop();
    assert!(
        logs.iter().any(|(_, t)| t.contains("edge events")),
        "{logs:?}"
    );
}

#[test]
fn read_answers_on_state_with_the_level() {
    let (chip, sim) = SimChip::new(28, false);
    let mut run = start(
        Box::new(chip),
        settings(&[
            ("InputGpios", "6U"),
            ("OutputGpios", "8H"),
            ("InputPollPeriod", "100000"),
        ]),
    );
    run.send(&format!("gpio/{CORE}/6/read"), b"ignored");
    assert_eq!(run.expect(), (state(6), "1".into()));
    // An output can be read too.
    run.send(&format!("gpio/{CORE}/8/read"), b"");
    assert_eq!(run.expect(), (state(8), "1".into()));
    sim.drive(6, false);
    run.send(&format!("gpio/{CORE}/6/read"), b"{}");
    assert_eq!(run.expect(), (state(6), "0".into()));
    run.quiet(QUIET);
    run.stop();
}

#[test]
fn write_sets_the_output_and_answers_with_its_state() {
    let (chip, sim) = SimChip::new(28, true);
    let mut run = start(Box::new(chip), settings(&[("OutputGpios", "9")]));
    for (payload, level) in [
        (&b"1"[..], true),
        (b"\"0\"", false),
        (b" 1\n", true),
        (b"0", false),
    ] {
        run.send(&format!("gpio/{CORE}/9/write"), payload);
        assert_eq!(
            run.expect(),
            (state(9), if level { "1" } else { "0" }.into())
        );
        assert_eq!(sim.level(9), Some(level));
    }
    assert_eq!(
        sim.writes(),
        vec![(9, true), (9, false), (9, true), (9, false)]
    );
    run.stop();
}

#[test]
fn write_to_an_input_is_v1s_error() {
    let (chip, sim) = SimChip::new(28, true);
    let mut run = start(Box::new(chip), settings(&[("InputGpios", "22")]));
    run.send(&format!("gpio/{CORE}/22/write"), b"1");
    let (topic, payload) = run.expect();
    assert_eq!(topic, error_topic());
    assert_eq!(
        json(&payload),
        json!({"topic": "gpio/my-core-thing/22/write", "error": "Invalid GPIO operation",
               "long_description": "GPIO 22 is configured as an INPUT GPIO. Write operations are not permitted."})
    );
    assert!(sim.writes().is_empty());
    run.stop();
}

#[test]
fn unknown_pins_and_bad_payloads_are_errors() {
    let (chip, sim) = SimChip::new(28, true);
    let mut run = start(
        Box::new(chip),
        settings(&[("InputGpios", "5"), ("OutputGpios", "9")]),
    );
    run.send(&format!("gpio/{CORE}/13/read"), b"");
    let (topic, payload) = run.expect();
    assert_eq!(topic, error_topic());
    assert_eq!(
        json(&payload),
        json!({"topic": "gpio/my-core-thing/13/read", "error": "Invalid GPIO operation",
               "long_description": "GPIO 13 is not configured as an INPUT or OUTPUT GPIO."})
    );
    run.send(&format!("gpio/{CORE}/x1/write"), b"1");
    let (_, payload) = run.expect();
    assert_eq!(
        json(&payload)["long_description"],
        "\"x1\" is not a GPIO number."
    );
    for bad in [&b"2"[..], b"on", b"", b"\xff", b"[1]"] {
        run.send(&format!("gpio/{CORE}/9/write"), bad);
        let (topic, payload) = run.expect();
        assert_eq!(topic, error_topic());
        let v = json(&payload);
        assert_eq!(v["error"], "Invalid GPIO payload");
        assert_eq!(v["topic"], "gpio/my-core-thing/9/write");
    }
    assert!(sim.writes().is_empty());
    run.stop();
}

#[test]
fn another_cores_requests_are_logged_not_answered() {
    let (chip, _sim) = SimChip::new(28, true);
    let mut run = start(Box::new(chip), settings(&[("OutputGpios", "9")]));
    run.send("gpio/other-core/9/write", b"1");
    run.send(&format!("gpio/{CORE}/9/toggle"), b"1");
    run.quiet(QUIET);
    let logs = run.stop();
    let warns: Vec<_> = logs.iter().filter(|(l, _)| *l == LogLevel::Warn).collect();
    assert_eq!(warns.len(), 2, "{logs:?}");
    assert!(warns[0].1.contains("gpio/other-core/9/write"));
}

#[test]
fn event_mode_publishes_every_change_once() {
    let (chip, sim) = SimChip::new(28, true);
    // A poll period this long would make a polling connector miss it all.
    let mut run = start(
        Box::new(chip),
        settings(&[("InputGpios", "5,6U"), ("InputPollPeriod", "100000")]),
    );
    sim.drive(5, true);
    assert_eq!(run.expect(), (state(5), "1".into()));
    sim.drive(6, false);
    assert_eq!(run.expect(), (state(6), "0".into()));
    sim.drive(5, false);
    sim.drive(5, true);
    assert_eq!(run.expect(), (state(5), "0".into()));
    assert_eq!(run.expect(), (state(5), "1".into()));
    // Same level again: no edge, no message.
    sim.drive(5, true);
    run.quiet(QUIET);
    run.stop();
}

#[test]
fn polling_mode_publishes_changes_each_period() {
    let (chip, sim) = SimChip::new(28, false);
    let mut run = start(
        Box::new(chip),
        settings(&[
            ("InputGpios", "5"),
            ("OutputGpios", "9"),
            ("InputPollPeriod", "10"),
        ]),
    );
    run.quiet(QUIET);
    let t = Instant::now();
    sim.drive(5, true);
    assert_eq!(run.expect(), (state(5), "1".into()));
    assert!(t.elapsed() < Duration::from_secs(1));
    // Requests are served between polls.
    run.send(&format!("gpio/{CORE}/9/write"), b"1");
    assert_eq!(run.expect(), (state(9), "1".into()));
    sim.drive(5, false);
    assert_eq!(run.expect(), (state(5), "0".into()));
    run.quiet(QUIET);
    let logs = run.stop();
    assert!(
        logs.iter()
            .any(|(_, t)| t.contains("polling inputs every 10 ms")),
        "{logs:?}"
    );
}

/// GPIO events per second through the connector's logic and thread on the
/// simulated chip (an ignored test: run with `--ignored --nocapture`).
#[test]
#[ignore]
fn bench_events_per_second() {
    const EVENTS: u32 = 200_000;
    let (chip, sim) = SimChip::new(28, true);
    let mut run = start(Box::new(chip), settings(&[("InputGpios", "5")]));
    let driver = std::thread::spawn(move || {
        for i in 0..EVENTS {
            sim.drive(5, i % 2 == 0);
        }
    });
    let t = Instant::now();
    let mut got = 0;
    while got < EVENTS {
        match run.next(Duration::from_secs(5)) {
            Some(_) => got += 1,
            None => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    driver.join().expect("driver");
    eprintln!(
        "BENCH gpio: {got} state messages from {EVENTS} edges in {secs:.3} s = {:.0} events/s ({} build)",
        got as f64 / secs,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    assert_eq!(got, EVENTS);
    run.stop();
}
