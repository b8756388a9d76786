//! End-to-end: the seed's example solution (`examples/temp-monitor/`) as a
//! user would run it — the Modbus-RTU Protocol Adapter reading a pymodbus
//! slave over a socat pty pair, the Python function `TempMonitor` (the
//! example's own file, with the real `greengrasssdk` vendored next to it)
//! applying its threshold, and the Twilio Notifications connector texting
//! through the local HTTP recorder standing in for Twilio, with the auth
//! token from the secret store.
//!
//! The slave's temperature register holds 215 (21.5 C). With the threshold
//! at 20.0 C one SMS arrives (once, however many readings follow: the
//! function alerts once per excursion); at 25.0 C none does, while the
//! readings keep coming. The example group itself is used, patched only
//! where a test must be: the serial device, the thresholds and poll period,
//! a recording function for the readings, the Twilio endpoint.
//!
//! The Modbus-RTU adapter runs only in a container (as in Greengrass), so
//! this needs root; without it, socat, pymodbus or greengrasssdk the tests
//! say so loudly and skip (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use evergreen_tests::http_recorder::{basic_auth, HttpRecorder, Recorded, Reply};
use evergreen_tests::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(40);
const SID: &str = "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const TOKEN: &str = "example-twilio-token-91b2";
const PHONE: &str = "+15555550100";
const FROM: &str = "+15555550199";
const TEMP_MONITOR: &str = "arn:aws:lambda:us-east-1:123456789012:function:TempMonitor:1";

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/temp-monitor")
}

/// Why the example cannot run here, if it cannot.
fn missing_peer() -> Option<String> {
    if let Some(why) = containers_unavailable() {
        return Some(format!(
            "the Modbus-RTU adapter runs only in a container: {why}"
        ));
    }
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(Command::new("socat").arg("-V")) {
        return Some("socat is missing (apt-get install socat)".into());
    }
    if !ok(Command::new("python3").args(["-c", "import pymodbus.simulator, serial"])) {
        return Some("pymodbus is missing (pip install pymodbus==3.16.1 pyserial)".into());
    }
    greengrasssdk().err()
}

/// A socat pty pair: the connector's end a link under /dev, the pymodbus
/// slave on the other.
struct Line {
    dir: tempfile::TempDir,
    port: PathBuf,
    socat: Child,
    slave: Child,
}

impl Line {
    fn start() -> Line {
        let dir = tempfile::tempdir().expect("tmp");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = PathBuf::from(format!("/dev/eg-temp-monitor-{}-{n}", std::process::id()));
        let slave_end = dir.path().join("slave");
        let socat = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", slave_end.display()))
            // Group read-write: in a container the connector runs as `nobody` with the pty's
            // group added (AutoAddGroupOwner).
            .arg(format!("pty,raw,echo=0,mode=0660,link={}", port.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat");
        let up = wait_for(Duration::from_secs(5), || {
            (std::fs::canonicalize(&slave_end).is_ok() && std::fs::canonicalize(&port).is_ok())
                .then_some(())
        });
        assert!(up.is_some(), "socat made no pty links");
        let log = dir.path().join("slave.log");
        let out = std::fs::File::create(&log).expect("slave log");
        let slave = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/modbus_slave.py"))
            .arg("--port")
            .arg(&slave_end)
            .args(["--parent-pid", &std::process::id().to_string()])
            .args(["--max-seconds", "300"])
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start the pymodbus slave");
        let serving = wait_for(Duration::from_secs(15), || {
            read(&log).contains("serving device").then_some(())
        });
        assert!(serving.is_some(), "slave did not start:\n{}", read(&log));
        Line {
            dir,
            port,
            socat,
            slave,
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        for (child, sig) in [
            (&mut self.slave, Signal::SIGKILL),
            (&mut self.socat, Signal::SIGTERM),
        ] {
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
            if wait_for(Duration::from_secs(5), || child.try_wait().ok().flatten()).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_file(&self.port);
    }
}

fn twilio(request: &Recorded) -> Reply {
    let to = request.form_field("To").unwrap_or_default();
    Reply::json(201, &json!({ "sid": "SM1", "status": "queued", "to": to }))
}

/// The example group, patched for the test (see the module docs).
fn example_group(line: &Line, threshold: &str, record: &Path) -> Value {
    let text = std::fs::read_to_string(example_dir().join("group.json")).expect("example group");
    let mut g: Value = serde_json::from_str(&text).expect("example group is JSON");
    for r in g["ResourceDefinitionVersion"]["Resources"]
        .as_array_mut()
        .expect("resources")
    {
        if r["Id"] == "rs485" {
            r["ResourceDataContainer"]["LocalDeviceResourceData"]["SourcePath"] = json!(line.port);
        }
    }
    for c in g["ConnectorDefinitionVersion"]["Connectors"]
        .as_array_mut()
        .expect("connectors")
    {
        if c["Id"] == "modbus" {
            c["Parameters"]["ModbusSerialPort"] = json!(line.port);
            c["Parameters"]["ModbusTimeoutMs"] = json!("500");
        }
        if c["Id"] == "twilio" {
            assert_eq!(c["Parameters"]["DefaultFromPhoneNumber"], FROM);
            assert_eq!(c["Parameters"]["TWILIO_ACCOUNT_SID"], SID);
        }
    }
    let functions = g["FunctionDefinitionVersion"]["Functions"]
        .as_array_mut()
        .expect("functions");
    let vars = &mut functions[0]["FunctionConfiguration"]["Environment"]["Variables"];
    assert_eq!(vars["ALERT_PHONE_NUMBER"], PHONE);
    vars["THRESHOLD_C"] = json!(threshold);
    vars["POLL_SECONDS"] = json!("0.5");
    functions.push(function("rec", &format!("record {}", record.display())));
    let subs = g["SubscriptionDefinitionVersion"]["Subscriptions"]
        .as_array_mut()
        .expect("subscriptions");
    subs.push(sub(
        "rec-readings",
        TEMP_MONITOR,
        "tempmonitor/reading",
        &fn_arn("rec"),
    ));
    subs.push(sub(
        "rec-status",
        "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/5",
        "twilio/message/status",
        &fn_arn("rec"),
    ));
    g["LoggerDefinitionVersion"] = group(vec![], vec![])["LoggerDefinitionVersion"].clone();
    g
}

/// A port nothing listens on now, for the Lambda IPC endpoint.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

struct Run {
    rt: Runtime,
    record: PathBuf,
    _line: Line,
}

impl Run {
    fn readings(&self) -> Vec<Value> {
        records(&self.record)
            .into_iter()
            .filter(|r| r["topic"] == "tempmonitor/reading")
            .filter_map(|r| serde_json::from_str(r["payload"].as_str()?).ok())
            .collect()
    }

    fn logs(&self) -> String {
        format!(
            "TempMonitor log:\n{}\nModbus log:\n{}\nTwilio log:\n{}\nruntime log:\n{}",
            read(&self.rt.function_log("TempMonitor")),
            read(
                &self
                    .rt
                    .log_path("user/us-east-1/aws/ModbusRTUProtocolAdapter.log")
            ),
            read(
                &self
                    .rt
                    .log_path("user/us-east-1/aws/TwilioNotifications.log")
            ),
            read(&self.rt.log_path("system/runtime.log")),
        )
    }

    /// Waits for `n` readings.
    fn wait_readings(&self, n: usize) -> Vec<Value> {
        wait_for(LIMIT, || {
            let got = self.readings();
            (got.len() >= n).then_some(got)
        })
        .unwrap_or_else(|| panic!("{n} readings: {:?}\n{}", self.readings(), self.logs()))
    }
}

/// Starts the example with `threshold`, or `None` (having said why) when
/// the peers are missing.
fn start(api: &HttpRecorder, threshold: &str) -> Option<Run> {
    if let Some(why) = missing_peer() {
        eprintln!("\n*** SKIPPED temp-monitor example test: {why} ***\n");
        return None;
    }
    let sdk = greengrasssdk().ok()?;
    let line = Line::start();
    let dir = tempfile::tempdir().expect("tmp");
    let record = line.dir.path().join("record.jsonl");
    // The function's code next to the group file (CodeUri "function"),
    // with the SDK vendored as V1 users deploy it.
    let code = dir.path().join("function");
    vendor_greengrasssdk(&sdk, &code).expect("vendor greengrasssdk");
    std::fs::copy(
        example_dir().join("function/temp_monitor.py"),
        code.join("temp_monitor.py"),
    )
    .expect("copy the function");
    if let Err(why) = put_secret(
        &dir.path().join("root"),
        "greengrass-TwilioAuthToken",
        TOKEN.as_bytes(),
    ) {
        eprintln!("\n*** SKIPPED temp-monitor example test: no secret store: {why} ***\n");
        return None;
    }
    let g = example_group(&line, threshold, &record);
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({
            "coreThing": { "ggDaemonPort": free_port() },
            "evergreen": { "aws": { "endpoints": { "twilio": api.url() } } }
        }),
        &[],
    );
    Some(Run {
        rt,
        record,
        _line: line,
    })
}

#[test]
fn above_the_threshold_one_sms_reaches_twilio() {
    let api = HttpRecorder::start(twilio);
    let Some(run) = start(&api, "20.0") else {
        return;
    };
    let sms = api
        .wait(LIMIT, |r| !r.is_empty())
        .unwrap_or_else(|| panic!("no SMS request\n{}", run.logs()));
    let r = &sms[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
    assert_eq!(
        r.header("authorization"),
        Some(basic_auth(SID, TOKEN).as_str())
    );
    assert_eq!(r.form_field("To").as_deref(), Some(PHONE));
    assert_eq!(r.form_field("From").as_deref(), Some(FROM));
    assert_eq!(
        r.form_field("Body").as_deref(),
        Some("Temperature alert: 21.5 C on device 1 is above the 20.0 C threshold")
    );
    // The connector's status went back to the function (and our recorder).
    let status = wait_for(LIMIT, || {
        records(&run.record)
            .into_iter()
            .find(|r| r["topic"] == "twilio/message/status")
    })
    .unwrap_or_else(|| panic!("no Twilio status\n{}", run.logs()));
    let status: Value =
        serde_json::from_str(status["payload"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(status["response"]["status"], "success", "{status}");
    assert_eq!(status["id"], "temp-alert-1");
    // More readings above the threshold: still one text.
    let before = run.readings().len();
    let readings = run.wait_readings(before + 4);
    assert!(readings
        .iter()
        .all(|r| r["celsius"] == 21.5 && r["above"] == true));
    assert_eq!(api.requests().len(), 1, "one alert per excursion");
}

#[test]
fn below_the_threshold_no_sms() {
    let api = HttpRecorder::start(twilio);
    let Some(run) = start(&api, "25.0") else {
        return;
    };
    let readings = run.wait_readings(5);
    assert!(
        readings
            .iter()
            .all(|r| r["celsius"] == 21.5 && r["above"] == false && r["threshold"] == 25.0),
        "{readings:?}"
    );
    assert!(api.requests().is_empty(), "no SMS: {:?}", api.requests());
}

/// The example group as shipped passes validation (where its
/// container-only Modbus connector can run).
#[test]
fn temp_monitor_example_group_is_valid() {
    require_containers!();
    assert_valid_file(&example_dir().join("group.json"), None);
}
