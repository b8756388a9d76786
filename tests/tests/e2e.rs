//! End-to-end: the real `evergreen` binary with real child processes.
//!
//! Each test writes a group of `eg-fn` test functions (and built-in
//! connectors), runs `evergreen run` on a temporary root, and checks what the
//! functions recorded, what the logs say and which processes exist.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use evergreen_tests::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

fn topics_and_sources(recs: &[Value]) -> BTreeSet<(String, String)> {
    recs.iter()
        .map(|r| {
            (
                r["topic"].as_str().unwrap_or_default().to_string(),
                r["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn messages_flow_only_along_subscriptions_with_greengrass_wildcards() {
    let dir = tempfile::tempdir().expect("tmp");
    let rec = |name: &str| dir.path().join(format!("{name}.jsonl"));
    let (hash, plus, none, reply) = (rec("hash"), rec("plus"), rec("none"), rec("reply"));
    let functions = vec![
        function("p-slash", "publish sensor/ 3 10"),
        function("p-one", "publish sensor/id-123/input 3 10"),
        function("p-deep", "publish sensor/group-a/id-123/input 3 10"),
        function("p-bare", "publish sensor 3 10"),
        function("rec-hash", &format!("record {}", hash.display())),
        function("rec-plus", &format!("record {}", plus.display())),
        function("rec-none", &format!("record {}", none.display())),
        function("echo", "echo reply"),
        function("rec-reply", &format!("record {}", reply.display())),
    ];
    let mut subs = Vec::new();
    for p in ["p-slash", "p-one", "p-deep", "p-bare"] {
        subs.push(sub(
            &format!("{p}-hash"),
            &fn_arn(p),
            "sensor/#",
            &fn_arn("rec-hash"),
        ));
        subs.push(sub(
            &format!("{p}-plus"),
            &fn_arn(p),
            "sensor/+/input",
            &fn_arn("rec-plus"),
        ));
    }
    // Right subject, wrong source: rec-none must get nothing from p-one.
    subs.push(sub(
        "wrong-source",
        &fn_arn("p-slash"),
        "sensor/id-123/input",
        &fn_arn("rec-none"),
    ));
    // Both directions: p-one -> echo, echo -> rec-reply.
    subs.push(sub(
        "to-echo",
        &fn_arn("p-one"),
        "sensor/+/input",
        &fn_arn("echo"),
    ));
    subs.push(sub(
        "from-echo",
        &fn_arn("echo"),
        "reply/#",
        &fn_arn("rec-reply"),
    ));
    let mut rt = Runtime::start(&group(functions, subs));

    let done = wait_for(LIMIT, || {
        (records(&hash).len() >= 9 && records(&plus).len() >= 3 && records(&reply).len() >= 3)
            .then_some(())
    });
    assert!(
        done.is_some(),
        "deliveries did not arrive: hash={} plus={} reply={}\nruntime log:\n{}",
        records(&hash).len(),
        records(&plus).len(),
        records(&reply).len(),
        read(&rt.log_path("system/runtime.log"))
    );
    // A graceful stop lets anything still in flight land before we count.
    let status = rt
        .stop_with(Signal::SIGTERM, LIMIT)
        .expect("runtime stops on SIGTERM");
    assert!(status.success(), "clean exit after SIGTERM, got {status:?}");

    let hash_recs = records(&hash);
    assert_eq!(
        hash_recs.len(),
        9,
        "sensor/# gets sensor/ and both deeper topics, not sensor: {hash_recs:?}"
    );
    assert_eq!(
        topics_and_sources(&hash_recs),
        BTreeSet::from([
            ("sensor/".to_string(), fn_arn("p-slash")),
            ("sensor/id-123/input".to_string(), fn_arn("p-one")),
            ("sensor/group-a/id-123/input".to_string(), fn_arn("p-deep")),
        ])
    );
    let plus_recs = records(&plus);
    assert_eq!(
        topics_and_sources(&plus_recs),
        BTreeSet::from([("sensor/id-123/input".to_string(), fn_arn("p-one"))]),
        "sensor/+/input matches exactly one level"
    );
    assert_eq!(plus_recs.len(), 3);
    assert!(
        records(&none).is_empty(),
        "no subscription from p-one to rec-none"
    );
    let reply_recs = records(&reply);
    assert_eq!(reply_recs.len(), 3);
    assert_eq!(
        topics_and_sources(&reply_recs),
        BTreeSet::from([("reply/sensor/id-123/input".to_string(), fn_arn("echo"))])
    );
    let payloads: BTreeSet<&str> = reply_recs
        .iter()
        .filter_map(|r| r["payload"].as_str())
        .collect();
    assert_eq!(
        payloads,
        BTreeSet::from([r#"{"seq":0}"#, r#"{"seq":1}"#, r#"{"seq":2}"#])
    );
}

#[test]
fn garbage_on_stdout_kills_and_restarts_only_that_function() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("flow.jsonl");
    let functions = vec![
        function("garbage", "garbage 100"),
        function("ticker", "publish data/tick 100000 20"),
        function("sink", &format!("record {}", out.display())),
    ];
    let subs = vec![sub("flow", &fn_arn("ticker"), "data/#", &fn_arn("sink"))];
    let rt = Runtime::start(&group(functions, subs));
    let log = rt.function_log("garbage");
    // Two violations mean the function was restarted at least once and
    // broke the protocol again.
    let seen = wait_for(LIMIT, || {
        (count_lines(&read(&log), "; killing the child") >= 2).then_some(())
    });
    assert!(seen.is_some(), "garbage function log:\n{}", read(&log));
    let text = read(&log);
    assert!(text.contains("bad frame on stdout"), "{text}");
    assert!(count_lines(&text, "started pid") >= 2, "restarted: {text}");
    assert!(text.contains("restarting in"), "{text}");
    // Meanwhile the others keep exchanging messages.
    let before = records(&out).len();
    let more = wait_for(LIMIT, || (records(&out).len() > before + 10).then_some(()));
    assert!(
        more.is_some(),
        "ticker -> sink kept flowing ({before} then {})",
        records(&out).len()
    );
    let sink_log = read(&rt.function_log("sink"));
    assert_eq!(
        count_lines(&sink_log, "started pid"),
        1,
        "sink was never restarted: {sink_log}"
    );
}

#[test]
fn a_function_that_exits_is_restarted_with_backoff() {
    let rt = Runtime::start(&group(vec![function("quitter", "exit 50 3")], vec![]));
    let log = rt.function_log("quitter");
    let seen = wait_for(LIMIT, || {
        (count_lines(&read(&log), "started pid") >= 3).then_some(())
    });
    let text = read(&log);
    assert!(seen.is_some(), "quitter restarted twice: {text}");
    assert!(text.contains("exited with status 3"), "{text}");
    assert!(
        text.contains("exiting with 3 on purpose"),
        "stderr lands in the log: {text}"
    );
    assert!(text.contains("restarting in"), "{text}");
}

#[test]
fn logs_are_arn_tagged_for_functions_connectors_and_runtime() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("hb.jsonl");
    let hb = "arn:aws:greengrass:us-east-1::/connectors/Heartbeat/versions/1";
    let ml = "arn:aws:greengrass:us-east-1::/connectors/MessageLog/versions/1";
    let mut g = group(
        vec![function("listener", &format!("record {}", out.display()))],
        vec![
            sub("hb-log", hb, "evergreen/heartbeat", ml),
            sub("hb-fn", hb, "evergreen/heartbeat", &fn_arn("listener")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [
        { "Id": "hb", "ConnectorArn": hb, "Parameters": { "IntervalSeconds": "1" } },
        { "Id": "ml", "ConnectorArn": ml, "Parameters": {} }
    ]});
    let rt = Runtime::start(&g);
    let ml_log = rt.log_path("user/us-east-1/aws/MessageLog.log");
    let seen = wait_for(LIMIT, || {
        read(&ml_log)
            .contains("topic=evergreen/heartbeat")
            .then_some(())
    });
    assert!(seen.is_some(), "MessageLog log:\n{}", read(&ml_log));
    assert!(wait_for(LIMIT, || (!records(&out).is_empty()).then_some(())).is_some());

    let format = regex::Regex::new(
        r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\]\[(DEBUG|INFO|WARN|ERROR|FATAL)\]-\(",
    )
    .expect("regex");
    let line = |l: &str| format.is_match(l);
    for (path, arn) in [
        (ml_log.clone(), ml.to_string()),
        (
            rt.log_path("user/us-east-1/aws/Heartbeat.log"),
            hb.to_string(),
        ),
        (rt.function_log("listener"), fn_arn("listener")),
    ] {
        let text = read(&path);
        assert!(!text.is_empty(), "{} exists", path.display());
        for l in text.lines() {
            assert!(line(l), "line format in {}: {l}", path.display());
            assert!(
                l.contains(&format!("]-({arn}) ")),
                "ARN tag in {}: {l}",
                path.display()
            );
        }
    }
    let runtime = read(&rt.log_path("system/runtime.log"));
    assert!(runtime.lines().count() > 2, "runtime log: {runtime}");
    assert!(runtime.lines().all(line), "runtime log format: {runtime}");
    assert!(runtime.contains("deployed: 3 started"), "{runtime}");
}

#[test]
fn publishing_to_a_wildcard_topic_is_refused_to_the_publisher() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("refused.jsonl");
    let catch_all = dir.path().join("all.jsonl");
    let functions = vec![
        function(
            "prober",
            &format!("refused-probe sensor/+/x {}", out.display()),
        ),
        function("all", &format!("record {}", catch_all.display())),
    ];
    let rt = Runtime::start(&group(
        functions,
        vec![sub("all", &fn_arn("prober"), "#", &fn_arn("all"))],
    ));
    let got = wait_for(LIMIT, || records(&out).into_iter().next());
    let got = got.unwrap_or_else(|| {
        panic!(
            "no Refused frame; prober log:\n{}",
            read(&rt.function_log("prober"))
        )
    });
    assert_eq!(got["refused"], "sensor/+/x");
    assert!(
        got["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("wildcard"),
        "{got}"
    );
    assert!(
        records(&catch_all).is_empty(),
        "a refused publish reaches nobody"
    );
    assert!(read(&rt.function_log("prober")).contains("refused"));
}

#[test]
fn invalid_group_is_refused_with_all_its_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.json");
    let g = group(
        vec![
            function("a", "record /dev/null"),
            function("a", "record /dev/null"),
        ],
        vec![
            sub("s1", &fn_arn("a"), "sensor/#/x", &fn_arn("a")),
            sub("s2", &fn_arn("a"), "t", &fn_arn("ghost")),
            sub(
                "s3",
                &fn_arn("a"),
                "t",
                "arn:aws:greengrass:us-east-1::/connectors/MessageLog/versions/9",
            ),
        ],
    );
    std::fs::write(&bad, g.to_string()).expect("write");
    let out = Command::new(evergreen_bin())
        .args(["validate"])
        .arg(&bad)
        .output()
        .expect("run validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "invalid: {stdout}");
    for needle in [
        "$.FunctionDefinitionVersion.Functions[1]",
        // Each element is named by its Id beside its index.
        r#"$.SubscriptionDefinitionVersion.Subscriptions[0] (Id "s1").Subject"#,
        r#"$.SubscriptionDefinitionVersion.Subscriptions[1] (Id "s2").Target"#,
        r#"$.SubscriptionDefinitionVersion.Subscriptions[2] (Id "s3").Target"#,
    ] {
        assert!(stdout.contains(needle), "missing {needle} in:\n{stdout}");
    }
    assert!(stdout.lines().count() >= 4, "{stdout}");

    // `run` refuses it too, with the configuration exit status, before starting anything.
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, test_config(&dir.path().join("root")).to_string()).expect("write");
    let out = Command::new(evergreen_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--group")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"Subscriptions[1] (Id "s2").Target"#));

    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        group(vec![function("a", "record /dev/null")], vec![]).to_string(),
    )
    .expect("write");
    let out = Command::new(evergreen_bin())
        .arg("validate")
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn sigkill_of_the_supervisor_leaves_no_child_behind() {
    let functions = vec![
        function("a", "record /dev/null"),
        function("b", "echo x"),
        function("c", "publish t 1 0"),
    ];
    let mut rt = Runtime::start(&group(functions, vec![]));
    let pid = rt.pid();
    let kids = wait_for(LIMIT, || {
        let ready = ["a", "b", "c"]
            .iter()
            .all(|f| read(&rt.function_log(f)).contains("ready after"));
        let kids = children_of(pid);
        (ready && kids.len() == 3).then_some(kids)
    })
    .unwrap_or_else(|| panic!("three ready children of {pid}: {:?}", children_of(pid)));
    assert!(kids.iter().all(|k| alive(*k)));
    rt.stop_with(Signal::SIGKILL, LIMIT).expect("killed");
    let gone = wait_for(LIMIT, || kids.iter().all(|k| !alive(*k)).then_some(()));
    assert!(
        gone.is_some(),
        "children outlived the supervisor: {:?}",
        kids.iter().filter(|k| alive(**k)).collect::<Vec<_>>()
    );
}

#[test]
fn sigterm_stops_children_and_their_process_groups() {
    let functions = vec![
        function("sleeper", "sleeper"),
        function("a", "record /dev/null"),
    ];
    let mut rt = Runtime::start(&group(functions, vec![]));
    let log = rt.function_log("sleeper");
    let grandchild: i32 = wait_for(LIMIT, || {
        let text = read(&log);
        let ready = text.contains("ready after");
        let pid = text
            .lines()
            .find_map(|l| l.split("grandchild pid ").nth(1))
            .and_then(|p| p.trim().parse().ok());
        if ready {
            pid
        } else {
            None
        }
    })
    .unwrap_or_else(|| panic!("sleeper log:\n{}", read(&log)));
    let kids = children_of(rt.pid());
    assert_eq!(kids.len(), 2);
    let status = rt.stop_with(Signal::SIGTERM, LIMIT).expect("stops");
    assert!(status.success(), "{status:?}");
    assert!(kids.iter().all(|k| !alive(*k)), "children reaped");
    let gone = wait_for(LIMIT, || (!alive(grandchild)).then_some(()));
    assert!(
        gone.is_some(),
        "the grandchild {grandchild} went with its process group"
    );
    let text = read(&log);
    assert!(text.contains("stopping (grace"), "{text}");
}

#[test]
fn embedded_default_group_runs_without_a_group_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, test_config(&root).to_string()).expect("write");
    let child = Command::new(evergreen_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut rt = Runtime { dir, child };
    let log = rt
        .dir
        .path()
        .join("root/var/log/user/us-east-1/aws/MessageLog.log");
    let seen = wait_for(LIMIT, || {
        read(&log)
            .contains("topic=evergreen/heartbeat")
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "MessageLog shows heartbeats: {}",
        read(&log)
    );
    assert!(
        read(&log).contains("\"core\":\"test-core\""),
        "{}",
        read(&log)
    );
    // The DeviceDefender report of this machine, routed to the same log.
    let defender = concat!(
        "topic=$aws/things/test-core/defender/metrics/json ",
        "source=arn:aws:greengrass:us-east-1::/connectors/DeviceDefender/versions/3 ",
        "payload={\"header\":{\"report_id\":"
    );
    let seen = wait_for(LIMIT, || read(&log).contains(defender).then_some(()));
    assert!(
        seen.is_some(),
        "MessageLog shows a Device Defender report: {}",
        read(&log)
    );
    assert!(
        read(&log).contains("\"listening_tcp_ports\""),
        "{}",
        read(&log)
    );
    let status = rt
        .stop_with(Signal::SIGINT, LIMIT)
        .expect("stops on SIGINT");
    assert!(status.success());
}
