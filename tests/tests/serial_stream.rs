//! End-to-end: the built-in SerialStream connector under the real runtime,
//! on a real pseudo-terminal pair made by socat.
//!
//! The connector opens one end (a `LocalDeviceResourceData` whose
//! `SourcePath` is the real `/dev/pts/N`); the test holds the other end and
//! reads and writes it directly. An `eg-fn feed` function publishes the
//! requests, an `eg-fn record` function receives statuses and data. Without
//! socat every test says so loudly and skips (CI installs it).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const SERIAL: &str = "arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3";

/// A socat pty pair: `port` is the connector's end, `peer` the test's.
struct Socat {
    child: Child,
    port: PathBuf,
    peer: PathBuf,
    /// A link socat made outside the temporary directory, removed on drop.
    outside_link: Option<PathBuf>,
}

impl Socat {
    /// Starts socat with its two ptys linked at `a` and `b`; `None` (after
    /// saying why) when socat is not installed.
    /// [`Socat::start`] with its two links and its log in `dir`.
    fn start_in(dir: &Path) -> Option<Socat> {
        Socat::start(&dir.join("a"), &dir.join("b"), &dir.join("socat.log"))
    }

    fn start(a: &Path, b: &Path, log: &Path) -> Option<Socat> {
        // The connector runs only in a container, as in Greengrass.
        if let Some(why) = containers_unavailable() {
            eprintln!("\n*** SKIPPED: SerialStream needs container mode: {why} ***\n");
            return None;
        }
        let stderr = File::create(log).expect("socat log");
        let child = match Command::new("socat")
            .arg("-d")
            .arg("-d")
            // The connector runs as `nobody` in its container: the pty's group (added by
            // AutoAddGroupOwner) must be able to read and write it, as `dialout` can a real port.
            .arg(format!("pty,raw,echo=0,mode=0660,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,mode=0660,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!(
                    "\n*** SKIPPED: socat is not available ({e}); install it (apt-get install socat) \
                     to run the SerialStream tests ***\n"
                );
                return None;
            }
        };
        let mut socat = Socat {
            child,
            port: PathBuf::new(),
            peer: PathBuf::new(),
            outside_link: None,
        };
        let ready = wait_for(LIMIT, || {
            let port = std::fs::canonicalize(a).ok()?;
            let peer = std::fs::canonicalize(b).ok()?;
            Some((port, peer))
        });
        let (port, peer) = ready
            .unwrap_or_else(|| panic!("socat made no pty pair within {LIMIT:?}:\n{}", read(log)));
        assert!(port.starts_with("/dev"), "{}", port.display());
        socat.port = port;
        socat.peer = peer;
        Some(socat)
    }

    fn stop(&mut self) {
        // SIGTERM lets socat remove its links; then reap it (bounded).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        let gone = wait_for(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().map(|_| ())
        });
        if gone.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        self.stop();
        if let Some(link) = &self.outside_link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// The test's end of the pair, non-blocking so every wait has a deadline.
struct Peer(File);

impl Peer {
    fn open(path: &Path) -> Peer {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Peer(file)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("write to the peer end");
    }

    /// Bytes arriving until `n` have come or `limit` passes.
    fn receive(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < n && Instant::now() < deadline {
            match self.0.read(&mut buf) {
                Ok(k) if k > 0 => got.extend_from_slice(&buf[..k]),
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("read from the peer end: {e}"),
            }
        }
        got
    }
}

/// Appends one `feed` line: `payload` a string is sent as its bytes.
fn feed(file: &Path, topic: &str, payload: Value) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("feed file");
    let line = json!({ "topic": topic, "payload": payload });
    f.write_all(format!("{line}\n").as_bytes())
        .expect("feed line");
}

fn serial_group(port: &Path, feed_file: &Path, record: &Path, extra: &[(&str, &str)]) -> Value {
    let mut g = group(
        vec![
            function("feed", &format!("feed {}", feed_file.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("reads", &fn_arn("feed"), "serial/+/read/#", SERIAL),
            sub("writes", &fn_arn("feed"), "serial/+/write/#", SERIAL),
            sub("status", SERIAL, "serial/+/status/#", &fn_arn("rec")),
            sub("data", SERIAL, "serial/+/read_response/#", &fn_arn("rec")),
        ],
    );
    g["ResourceDefinitionVersion"] = json!({ "Resources": [{
        "Id": "serial-port",
        "Name": "SerialPort",
        "ResourceDataContainer": { "LocalDeviceResourceData": {
            "SourcePath": port,
            "GroupOwnerSetting": { "AutoAddGroupOwner": true }
        }}
    }]});
    let mut parameters = json!({
        "BaudRate": "115200",
        "Timeout": "1",
        "SerialPort": port,
        "SerialPort-ResourceId": "serial-port",
        "PollingRead": "false"
    });
    for (k, v) in extra {
        parameters[*k] = json!(v);
    }
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "serial",
        "ConnectorArn": SERIAL,
        "Parameters": parameters
    }]});
    g
}

/// The recorded messages on `serial/test-core/<kind><port>`, payloads parsed.
fn published(record: &Path, kind: &str, port: &Path) -> Vec<Value> {
    let topic = format!("serial/test-core/{kind}{}", port.display());
    records(record)
        .into_iter()
        .filter(|r| r["topic"] == topic.as_str())
        .map(|r| {
            assert_eq!(r["source"], SERIAL, "{r}");
            serde_json::from_str(r["payload"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("JSON payload ({e}): {r}"))
        })
        .collect()
}

fn status_of(record: &Path, port: &Path, id: &str) -> Option<Value> {
    published(record, "status", port)
        .into_iter()
        .find(|s| s["id"] == id)
}

fn data_of(record: &Path, port: &Path, id: &str) -> Option<Value> {
    published(record, "read_response", port)
        .into_iter()
        .find(|s| s["id"] == id)
}

struct Context<'a> {
    rt: &'a Runtime,
    feed: &'a Path,
    record: &'a Path,
    port: &'a Path,
}

impl Context<'_> {
    fn topic(&self, op: &str) -> String {
        format!("serial/test-core/{op}{}", self.port.display())
    }

    fn request(&self, op: &str, payload: Value) {
        feed(self.feed, &self.topic(op), payload);
    }

    /// The status for `id`, waiting for it.
    fn status(&self, id: &str) -> Value {
        wait_for(LIMIT, || status_of(self.record, self.port, id)).unwrap_or_else(|| {
            panic!(
                "no status for {id}: {:?}\nconnector log:\n{}\nruntime log:\n{}",
                records(self.record),
                read(&self.rt.log_path("user/us-east-1/aws/SerialStream.log")),
                read(&self.rt.log_path("system/runtime.log"))
            )
        })
    }

    fn expect_fail(&self, id: &str, needle: &str) {
        let status = self.status(id);
        assert_eq!(status["response"]["status"], "fail", "{id}: {status}");
        let message = status["response"]["error_message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(needle), "{id}: {needle:?} in {status}");
    }

    fn expect_success(&self, id: &str) {
        let status = self.status(id);
        assert_eq!(status, json!({"response": {"status": "success"}, "id": id}));
    }
}

fn connector_log(rt: &Runtime) -> String {
    read(&rt.log_path("user/us-east-1/aws/SerialStream.log"))
}

#[test]
fn serial_stream_writes_reads_on_demand_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(mut socat) = Socat::start_in(dir.path()) else {
        return;
    };
    let mut peer = Peer::open(&socat.peer);
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    let g = serial_group(&socat.port, &feed_file, &record, &[]);
    assert_valid_group(dir.path(), &g);
    let mut rt = Runtime::start(&g);
    let cx = Context {
        rt: &rt,
        feed: &feed_file,
        record: &record,
        port: &socat.port,
    };

    // Writes: ascii text, then hex (base64 on the wire) with every byte value
    // that matters (NUL, 0xff, XON/XOFF characters pass untouched).
    cx.request(
        "write",
        json!(r#"{"data": "hello serial", "type": "ascii", "id": "w1"}"#),
    );
    cx.expect_success("w1");
    assert_eq!(peer.receive(12, LIMIT), b"hello serial");
    cx.request(
        "write",
        json!({"data": "AAEC/xET", "type": "hex", "id": "w2"}),
    );
    cx.expect_success("w2");
    assert_eq!(peer.receive(6, LIMIT), [0, 1, 2, 0xff, 0x11, 0x13]);

    // Reads on demand: the bytes are waiting in the port when asked for.
    peer.send(b"pong!");
    cx.request(
        "read",
        json!({"readLength": "5", "type": "ascii", "id": "r1"}),
    );
    cx.expect_success("r1");
    assert_eq!(
        data_of(&record, &socat.port, "r1"),
        Some(json!({"data": "pong!", "id": "r1"}))
    );
    peer.send(&[0xde, 0xad, 0xbe, 0xef]);
    cx.request(
        "read",
        json!({"readLength": "4", "type": "HEX", "id": "r2"}),
    );
    cx.expect_success("r2");
    assert_eq!(
        data_of(&record, &socat.port, "r2"),
        Some(json!({"data": "3q2+7w==", "id": "r2"}))
    );

    // Timeout (1 s): nothing to read is a fail status and no data; fewer
    // bytes than asked are published, then a fail status.
    let asked = Instant::now();
    cx.request(
        "read",
        json!({"readLength": "10", "type": "ascii", "id": "r3"}),
    );
    cx.expect_fail("r3", "Read timed out: no data");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "answered before the Timeout: {:?}",
        asked.elapsed()
    );
    assert_eq!(data_of(&record, &socat.port, "r3"), None);
    peer.send(b"abc");
    cx.request(
        "read",
        json!({"readLength": "10", "type": "ascii", "id": "r4"}),
    );
    cx.expect_fail("r4", "3 of 10 bytes");
    assert_eq!(
        data_of(&record, &socat.port, "r4"),
        Some(json!({"data": "abc", "id": "r4"}))
    );

    // Malformed requests through the runtime, each a fail status naming
    // the field, in the order they were sent.
    let bad: Vec<(&str, &str, Value, &str)> = vec![
        (
            "read",
            "m1",
            json!({"readLength": "0", "type": "ascii", "id": "m1"}),
            "readLength \"0\" is not a whole number",
        ),
        (
            "read",
            "m2",
            json!({"readLength": 30, "type": "ascii", "id": "m2"}),
            "readLength must be a string of digits",
        ),
        (
            "read",
            "m3",
            json!({"readLength": "3", "type": "binary", "id": "m3"}),
            "type \"binary\" is not",
        ),
        (
            "read",
            "m4",
            json!({"readLength": "3", "id": "m4"}),
            "type is missing",
        ),
        (
            "read",
            "m5",
            json!({"readLength": "63995", "type": "hex", "id": "m5"}),
            "above the read limit of 63994 bytes",
        ),
        (
            "write",
            "m6",
            json!({"data": "not base64!", "type": "hex", "id": "m6"}),
            "data is not valid base64",
        ),
        (
            "write",
            "m7",
            json!({"type": "ascii", "id": "m7"}),
            "data is missing",
        ),
        (
            "write",
            "m8",
            json!({"data": 5, "type": "ascii", "id": "m8"}),
            "data must be a string",
        ),
        (
            "write",
            "m9",
            json!({"data": "x".repeat(128_001), "type": "ascii", "id": "m9"}),
            "data is 128001 bytes, above the write limit of 128000 bytes",
        ),
        (
            "write",
            "",
            json!({"data": "abc", "type": "ascii", "id": ""}),
            "id must not be empty",
        ),
    ];
    for (op, _, payload, _) in &bad {
        cx.request(op, payload.clone());
    }
    // Not JSON at all (no id to echo), and a request for another port.
    cx.request("read", json!("{\"readLength\": \"3\", oops"));
    feed(
        &feed_file,
        "serial/test-core/write/dev/ttyNOPE0",
        json!({"data": "lost", "type": "ascii", "id": "elsewhere"}),
    );
    cx.request(
        "write",
        json!({"data": "after", "type": "ascii", "id": "w3"}),
    );
    cx.expect_success("w3");
    for (_, id, _, needle) in &bad {
        if !id.is_empty() {
            cx.expect_fail(id, needle);
        }
    }
    cx.expect_fail("", "id must not be empty");
    let statuses = published(&record, "status", &socat.port);
    let not_json: Vec<&Value> = statuses
        .iter()
        .filter(|s| {
            s["response"]["error_message"]
                .as_str()
                .is_some_and(|m| m.contains("not valid JSON"))
        })
        .collect();
    assert_eq!(not_json.len(), 1, "{statuses:?}");
    assert!(not_json[0].get("id").is_none(), "{}", not_json[0]);
    let elsewhere = wait_for(LIMIT, || {
        records(&record)
            .into_iter()
            .find(|r| r["topic"] == "serial/test-core/status/dev/ttyNOPE0")
    })
    .expect("a status for the other port");
    let elsewhere: Value =
        serde_json::from_str(elsewhere["payload"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(elsewhere["id"], "elsewhere");
    assert!(
        elsewhere["response"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("serves port {}", socat.port.display()))),
        "{elsewhere}"
    );

    // Statuses left in the order the requests came.
    let order: Vec<String> = statuses
        .iter()
        .map(|s| s["id"].as_str().unwrap_or("-").to_string())
        .collect();
    let expected: Vec<String> = ["w1", "w2", "r1", "r2", "r3", "r4"]
        .iter()
        .map(|s| s.to_string())
        .chain(bad.iter().map(|(_, id, _, _)| id.to_string()))
        .chain(["-".to_string(), "w3".to_string()])
        .collect();
    assert_eq!(order, expected);

    // Only the good writes reached the wire: "after", and nothing of the
    // refused ones.
    assert_eq!(peer.receive(5, LIMIT), b"after");
    assert_eq!(peer.receive(1, Duration::from_millis(300)), b"");

    // The write limit is inclusive: 128000 bytes all arrive (the test reads
    // while the connector writes; the pty holds only a few KiB).
    let big: String = (0..128_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    cx.request("write", json!({"data": big, "type": "ascii", "id": "big"}));
    let arrived = peer.receive(big.len(), LIMIT);
    assert!(
        arrived == big.as_bytes(),
        "{} of {} bytes arrived intact",
        arrived.len(),
        big.len()
    );
    cx.expect_success("big");

    // The connector's footprint after a 128000-byte write, for the record.
    match children_of(rt.pid())
        .into_iter()
        .find(|pid| cmdline(*pid).contains("connector SerialStream"))
    {
        Some(pid) => eprintln!(
            "SerialStream child pid {pid}: VmRSS {} KiB",
            vm_rss_kb(pid).map_or("?".to_string(), |k| k.to_string())
        ),
        None => eprintln!("SerialStream child not found among the runtime's children"),
    }

    let log = connector_log(&rt);
    assert!(
        log.contains(&format!(
            "serial port {} (resource serial-port)",
            socat.port.display()
        )),
        "the granted SourcePath is opened:\n{log}"
    );
    assert!(
        log.contains("[WARN]") && log.contains("request refused"),
        "{log}"
    );
    let status = rt
        .stop_with(Signal::SIGTERM, LIMIT)
        .expect("runtime stops on SIGTERM");
    assert!(status.success(), "clean exit, got {status:?}");
    socat.stop();
}

#[test]
fn serial_stream_polling_publishes_what_arrives_without_an_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(mut socat) = Socat::start_in(dir.path()) else {
        return;
    };
    let mut peer = Peer::open(&socat.peer);
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    // Mark parity and both flow controls, which tokio-serial cannot set
    // itself, ride along.
    let g = serial_group(
        &socat.port,
        &feed_file,
        &record,
        &[
            ("PollingRead", "True"),
            ("PollingReadLength", "64"),
            ("PollingReadInterval", "1"),
            ("PollingReadType", "ascii"),
            ("Parity", "M"),
            ("RtsCts", "true"),
            ("XonXoff", "true"),
        ],
    );
    assert_valid_group(dir.path(), &g);
    let mut rt = Runtime::start(&g);
    let polled = |needle: &str| {
        published(&record, "read_response", &socat.port)
            .into_iter()
            .any(|d| d["data"].as_str().is_some_and(|s| s.contains(needle)))
    };
    // Wait for the connector to have the port, then send twice: two polls.
    let opened = wait_for(LIMIT, || {
        connector_log(&rt)
            .contains("open at 115200 baud")
            .then_some(())
    });
    assert!(opened.is_some(), "port opened:\n{}", connector_log(&rt));
    peer.send(b"tick-1");
    let first = wait_for(LIMIT, || polled("tick-1").then_some(()));
    assert!(
        first.is_some(),
        "first poll: {:?}\n{}",
        records(&record),
        connector_log(&rt)
    );
    peer.send(b"tick-2");
    let second = wait_for(LIMIT, || polled("tick-2").then_some(()));
    assert!(second.is_some(), "second poll: {:?}", records(&record));

    let data = published(&record, "read_response", &socat.port);
    let text: String = data
        .iter()
        .map(|d| {
            assert!(d.get("id").is_none(), "polled data has no id: {d}");
            assert_eq!(d.as_object().map(|o| o.len()), Some(1), "{d}");
            d["data"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(text, "tick-1tick-2", "every byte once, in order");
    assert!(
        published(&record, "status", &socat.port).is_empty(),
        "polls publish no status"
    );

    // Requests are still served in polling mode.
    feed(
        &feed_file,
        &format!("serial/test-core/write{}", socat.port.display()),
        json!({"data": "ok?", "type": "ascii", "id": "w"}),
    );
    let status = wait_for(LIMIT, || status_of(&record, &socat.port, "w")).expect("write status");
    assert_eq!(status["response"]["status"], "success", "{status}");
    assert_eq!(peer.receive(3, LIMIT), b"ok?");

    // The termios as the kernel holds it: mark parity is CMSPAR with
    // PARODD (the pty itself drops PARENB, and the connector says so),
    // both flow controls on.
    let log = connector_log(&rt);
    assert!(
        log.contains("[WARN]") && log.contains("did not keep PARENB for mark parity"),
        "{log}"
    );
    assert!(
        log.contains("Polling-Read: 64 bytes every 1 s as ascii"),
        "{log}"
    );
    match Command::new("stty")
        .arg("-a")
        .arg("-F")
        .arg(&socat.port)
        .output()
    {
        Ok(out) if out.status.success() => {
            let flags = String::from_utf8_lossy(&out.stdout);
            let words: Vec<&str> = flags.split_whitespace().collect();
            for flag in ["cmspar", "parodd", "crtscts", "ixon", "ixoff"] {
                assert!(words.contains(&flag), "{flag} in {flags}");
            }
        }
        // The connector holds the port exclusively (TIOCEXCL); only root
        // can look at it then.
        other => eprintln!("stty cannot inspect {}: {other:?}", socat.port.display()),
    }
    let status = rt
        .stop_with(Signal::SIGTERM, LIMIT)
        .expect("runtime stops on SIGTERM");
    assert!(status.success(), "clean exit, got {status:?}");
    socat.stop();
}

#[test]
fn serial_stream_fails_requests_while_the_port_is_gone_and_reopens_it() {
    let dir = tempfile::tempdir().expect("tmp");
    // The port must survive socat's restart under one name, so socat links
    // it from /dev (where SourcePath must be): root only.
    let link = PathBuf::from(format!("/dev/evergreen-test-serial-{}", std::process::id()));
    let start = |dir: &Path, n: u32| {
        let mut socat = Socat::start(
            &link,
            &dir.join(format!("b{n}")),
            &dir.join(format!("socat{n}.log")),
        )?;
        socat.outside_link = Some(link.clone());
        Some(socat)
    };
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("\n*** SKIPPED: needs root to link a pty into /dev ***\n");
        return;
    }
    let Some(mut socat) = start(dir.path(), 1) else {
        return;
    };
    let mut peer = Peer::open(&socat.peer);
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    let g = serial_group(&link, &feed_file, &record, &[]);
    assert_valid_group(dir.path(), &g);
    let rt = Runtime::start(&g);
    let cx = Context {
        rt: &rt,
        feed: &feed_file,
        record: &record,
        port: &link,
    };
    cx.request("write", json!({"data": "one", "type": "ascii", "id": "1"}));
    cx.expect_success("1");
    assert_eq!(peer.receive(3, LIMIT), b"one");

    // The device goes away: requests fail with the reason.
    drop(peer);
    socat.stop();
    drop(socat);
    cx.request("write", json!({"data": "two", "type": "ascii", "id": "2"}));
    cx.expect_fail("2", "Could not write to port");
    cx.request(
        "read",
        json!({"readLength": "1", "type": "ascii", "id": "3"}),
    );
    cx.expect_fail("3", "Could not read from port");

    // It comes back under the same name: the connector reopens it.
    let Some(socat) = start(dir.path(), 2) else {
        return;
    };
    let mut peer = Peer::open(&socat.peer);
    let mut n = 0;
    let reopened = wait_for(LIMIT, || {
        n += 1;
        let id = format!("again-{n}");
        cx.request("write", json!({"data": "back", "type": "ascii", "id": id}));
        let status = cx.status(&id);
        (status["response"]["status"] == "success").then_some(())
    });
    assert!(reopened.is_some(), "{:?}", records(&record));
    assert_eq!(peer.receive(4, LIMIT), b"back");
    let log = connector_log(&rt);
    assert!(
        log.contains("failed") && log.contains("reopening in"),
        "{log}"
    );
    drop(socat);
}

#[test]
fn serial_stream_answers_busy_beyond_its_queue() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(mut socat) = Socat::start_in(dir.path()) else {
        return;
    };
    let mut peer = Peer::open(&socat.peer);
    let feed_file = dir.path().join("feed.jsonl");
    let record = dir.path().join("record.jsonl");
    let g = serial_group(&socat.port, &feed_file, &record, &[("Timeout", "3")]);
    let rt = Runtime::start(&g);
    let cx = Context {
        rt: &rt,
        feed: &feed_file,
        record: &record,
        port: &socat.port,
    };
    // A read with nothing to read holds the port for the Timeout, while
    // 300 one-byte writes arrive: 256 wait their turn, the rest are busy.
    cx.request("write", json!({"data": "!", "type": "ascii", "id": "warm"}));
    cx.expect_success("warm");
    assert_eq!(peer.receive(1, LIMIT), b"!");
    let mut lines = String::new();
    let line = |topic: String, payload: Value| {
        json!({"topic": topic, "payload": payload}).to_string() + "\n"
    };
    lines.push_str(&line(
        cx.topic("read"),
        json!({"readLength": "1", "type": "ascii", "id": "hold"}),
    ));
    for i in 0..300 {
        lines.push_str(&line(
            cx.topic("write"),
            json!({"data": "x", "type": "ascii", "id": format!("q{i}")}),
        ));
    }
    // One append, so the feed publishes them all at once.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&feed_file)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .expect("feed");
    cx.expect_fail("hold", "Read timed out: no data");
    let all = wait_for(LIMIT, || {
        let statuses = published(&record, "status", &socat.port);
        (statuses.len() >= 302).then_some(statuses)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} statuses",
            published(&record, "status", &socat.port).len()
        )
    });
    let busy: Vec<usize> = (0..300)
        .filter(|i| {
            let id = format!("q{i}");
            let mine: Vec<&Value> = all.iter().filter(|s| s["id"] == id.as_str()).collect();
            assert_eq!(mine.len(), 1, "one status for {id}");
            match mine[0]["response"]["status"].as_str() {
                Some("success") => false,
                _ => {
                    let message = mine[0]["response"]["error_message"]
                        .as_str()
                        .unwrap_or_default();
                    assert!(message.contains("busy: 256 requests"), "{}", mine[0]);
                    true
                }
            }
        })
        .collect();
    assert!(!busy.is_empty(), "the queue never filled");
    // The port task may take the read from the queue a little late (one
    // thread, cooperative), so the 256th write may find the queue full.
    assert!(busy.len() <= 300 - 255, "{} busy", busy.len());
    assert!(
        busy.iter().all(|i| *i >= 255),
        "only requests beyond the queue are busy: {busy:?}"
    );
    let written = peer.receive(300 - busy.len(), LIMIT);
    assert_eq!(written, vec![b'x'; 300 - busy.len()]);
    socat.stop();
}
