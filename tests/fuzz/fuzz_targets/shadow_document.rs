//! The local shadow service (`evergreen_shadow`): update (merge, a `null` deletes), delta,
//! get, delete, version checks, the shadow files and the cloud's answers for a synced thing,
//! driven through the call its service thread makes for every message.
//!
//! Input: messages separated by the byte 0x1E (ASCII record separator, never in the JSON of
//! a seed). A message is a control byte and a payload. Control 0xFF: the payload is
//! `<topic>\n<payload>` (any topic). Otherwise the topic is built from the control bits,
//! so the fuzzer spends its time on documents rather than on topic strings:
//! bits 0–1 the operation (get, update, delete, update), bit 2 the named shadow `config`,
//! bit 3 from the cloud, bit 4 the synced thing `sensor` (else the core's `core`),
//! bits 5–6 the suffix (none, `accepted`, `rejected`, `documents`), bit 7 the clock jumps
//! 49 hours first (past a deleted shadow's tombstone); otherwise it moves one second.
//!
//! Invariants: the service never fails internally (a 500 means a shadow it wrote could not
//! be read back), and after an accepted update a get answers with the version and the
//! state `/update/documents` announced.

#![no_main]

use std::collections::BTreeSet;
use std::path::PathBuf;

use evergreen_shadow::fuzzing::Service;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SEPARATOR: u8 = 0x1E;
const START: u64 = 1_700_000_000;

fn dir() -> PathBuf {
    // tmpfs: every update is written with fsync and rename, which costs nothing there.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("evergreen-fuzz-shadow-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: PathBuf = dir();
    }
    let dir = DIR.with(PathBuf::clone);
    // Every input starts from no shadows at all.
    let _ = std::fs::remove_dir_all(&dir);
    let mut service = Service::open(&dir).expect("the shadow directory opens");
    service.set_synced(BTreeSet::from(["sensor".to_string()]));
    let mut now = START;
    for message in data.split(|b| *b == SEPARATOR) {
        let Some((&control, payload)) = message.split_first() else {
            continue;
        };
        let (topic, source, payload) = if control == 0xFF {
            let Some(nl) = payload.iter().position(|b| *b == b'\n') else {
                continue;
            };
            let Ok(topic) = std::str::from_utf8(&payload[..nl]) else {
                continue;
            };
            (
                topic.to_string(),
                "arn:aws:lambda:us-east-1:123456789012:function:f:1",
                &payload[nl + 1..],
            )
        } else {
            let thing = if control & 0x10 != 0 {
                "sensor"
            } else {
                "core"
            };
            let name = if control & 0x04 != 0 {
                "/name/config"
            } else {
                ""
            };
            let op = ["get", "update", "delete", "update"][usize::from(control & 3)];
            let suffix =
                ["", "/accepted", "/rejected", "/documents"][usize::from((control >> 5) & 3)];
            let source = if control & 0x08 != 0 {
                "cloud"
            } else {
                "arn:aws:iot:us-east-1:123456789012:thing/sensor"
            };
            if control & 0x80 != 0 {
                now += 49 * 3600;
            }
            (
                format!("$aws/things/{thing}/shadow{name}/{op}{suffix}"),
                source,
                payload,
            )
        };
        now += 1;
        let handled = service.handle(source, &topic, payload, now);
        for (topic, value) in handled.local.iter().chain(&handled.cloud) {
            assert!(topic.starts_with("$aws/things/"), "{topic}");
            assert_ne!(
                value.get("code"),
                Some(&Value::from(500)),
                "{topic}: {value}"
            );
        }
        if let Some((accepted, answer)) = &handled.answer {
            assert_ne!(answer.get("code"), Some(&Value::from(500)), "{answer}");
            if *accepted && topic.ends_with("/update") {
                check_readback(&mut service, &topic, &handled.local, now);
            }
        }
    }
});

/// After an accepted update, a get answers with what `/update/documents` said is current.
fn check_readback(service: &mut Service, topic: &str, local: &[(String, Value)], now: u64) {
    let Some((_, documents)) = local.iter().find(|(t, _)| t.ends_with("/update/documents")) else {
        panic!("an accepted update publishes /update/documents: {local:?}");
    };
    let current = &documents["current"];
    let get = format!("{}/get", topic.trim_end_matches("/update"));
    let source = "arn:aws:iot:us-east-1:123456789012:thing/sensor";
    let answer = service.handle(source, &get, b"{}", now).answer;
    let Some((true, got)) = answer else {
        panic!("a get after an accepted update is accepted: {answer:?}");
    };
    assert_eq!(got["version"], current["version"], "{got} vs {current}");
    for section in ["desired", "reported"] {
        assert_eq!(
            got["state"][section], current["state"][section],
            "{got} vs {current}"
        );
    }
}
