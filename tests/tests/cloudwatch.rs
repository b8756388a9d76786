//! End-to-end: the built-in CloudWatchMetrics connector under the real
//! runtime, against a real `moto_server`. An `eg-fn feed` function
//! publishes metrics on `cloudwatch/metric/put`; an `eg-fn record` function
//! receives the statuses; what CloudWatch holds is read back with
//! `ListMetrics` and `GetMetricStatistics`. Failure paths go through the
//! fault proxy (`evergreen_tests::fault_proxy`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use evergreen_aws::AwsClient;
use evergreen_ipc::AwsCredentials;
use evergreen_tests::fault_proxy::{Fault, FaultProxy};
use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
const CLOUDWATCH: &str = "arn:aws:greengrass:us-east-1::/connectors/CloudWatchMetrics/versions/5";
const STATUS: &str = "cloudwatch/metric/put/status";
/// 2023-11-14T22:13:20Z: every test metric carries it, so one
/// GetMetricStatistics period covers them all.
const TS: u64 = 1_700_000_000;

fn cloudwatch_group(dir: &Path, interval: &str) -> Value {
    let feed = dir.join("feed.jsonl");
    let record = dir.join("status.jsonl");
    let mut g = group(
        vec![
            function("feed", &format!("feed {}", feed.display())),
            function("rec", &format!("record {}", record.display())),
        ],
        vec![
            sub("put", &fn_arn("feed"), "cloudwatch/metric/put", CLOUDWATCH),
            sub("status", CLOUDWATCH, STATUS, &fn_arn("rec")),
        ],
    );
    g["ConnectorDefinitionVersion"] = json!({ "Connectors": [{
        "Id": "cloudwatch",
        "ConnectorArn": CLOUDWATCH,
        "Parameters": {
            "PublishInterval": interval,
            "PublishRegion": "",
            "MemorySize": "65535",
            "MaxMetricsToRetain": "2000",
            "IsolationMode": "NoContainer"
        }
    }]});
    g
}

fn query(moto: &Moto, action: &str, params: &[(&str, String)]) -> String {
    let aws = AwsClient::with_credentials(
        REGION,
        BTreeMap::from([("monitoring".to_string(), moto.url())]),
        AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: None,
            expiration_ms: None,
        },
    );
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(aws.query("monitoring", "2010-08-01", action, &params))
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

/// `(SampleCount, Maximum)` of `metric` in `namespace` with the given
/// dimensions, over the test period.
fn stats(moto: &Moto, namespace: &str, metric: &str, dims: &[(&str, &str)]) -> (f64, f64) {
    let mut params = vec![
        ("Namespace", namespace.to_string()),
        ("MetricName", metric.to_string()),
        ("StartTime", "2023-11-14T00:00:00Z".to_string()),
        ("EndTime", "2023-11-15T00:00:00Z".to_string()),
        ("Period", "86400".to_string()),
        ("Statistics.member.1", "SampleCount".to_string()),
        ("Statistics.member.2", "Maximum".to_string()),
    ];
    let names: Vec<(String, String)> = dims
        .iter()
        .enumerate()
        .flat_map(|(i, (n, v))| {
            [
                (format!("Dimensions.member.{}.Name", i + 1), n.to_string()),
                (format!("Dimensions.member.{}.Value", i + 1), v.to_string()),
            ]
        })
        .collect();
    let name_refs: Vec<(&str, String)> =
        names.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    params.extend(name_refs);
    let xml = query(moto, "GetMetricStatistics", &params);
    let all = |tag: &str| -> Vec<f64> {
        xml.split(&format!("<{tag}>"))
            .skip(1)
            .filter_map(|p| p.split_once(&format!("</{tag}>"))?.0.trim().parse().ok())
            .collect()
    };
    (
        all("SampleCount").iter().sum(),
        all("Maximum").into_iter().fold(f64::NAN, f64::max),
    )
}

/// The AWS settings for an endpoint on `port`, and a router queue deep
/// enough for the test's burst of 2000+ messages (the default 1024 would
/// drop part of the burst before the connector sees it; this test is about
/// the connector's own bound).
fn burst_config(port: u16) -> Value {
    let mut config = aws_core_config(&format!("http://127.0.0.1:{port}"));
    merge(&mut config, &json!({"evergreen": {"queueCapacity": 8192}}));
    config
}

fn feed(dir: &Path, lines: &[Value]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("feed.jsonl"))
        .expect("feed file");
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    f.write_all(text.as_bytes()).expect("feed");
}

fn metric(namespace: &str, name: &str, value: f64) -> Value {
    json!({"topic": "cloudwatch/metric/put", "payload": {"request": {"namespace": namespace, "metricData": {
        "metricName": name, "dimensions": [{"name": "hostname", "value": "h1"}],
        "timestamp": TS, "value": value, "unit": "Count"}}}})
}

fn statuses(dir: &Path) -> Vec<Value> {
    records(&dir.join("status.jsonl"))
        .iter()
        .filter(|r| r["topic"] == STATUS && r["source"] == CLOUDWATCH)
        .filter_map(|r| serde_json::from_str::<Value>(r["payload"].as_str()?).ok())
        .map(|s| s["response"].clone())
        .collect()
}

const CORE_DIMS: [(&str, &str); 2] = [("hostname", "h1"), ("coreName", "test-core")];

#[test]
fn cloudwatch_metrics_arrive_batched_with_the_core_name() {
    let Some(moto) = Moto::start() else { return };
    let work = tempfile::tempdir().expect("tmp");
    let g = cloudwatch_group(work.path(), "1");
    assert_valid_group(work.path(), &g);
    let rt = Runtime::start_config(&g, &moto.core_config(), &[]);
    let log = rt.log_path("user/us-east-1/aws/CloudWatchMetrics.log");

    let mut msgs: Vec<Value> = (0..25)
        .map(|i| metric("Evergreen/Test", "latency", f64::from(i)))
        .collect();
    msgs.push(metric("Other", "temp", 7.5));
    msgs.push(
        json!({"topic": "cloudwatch/metric/put", "payload": {"request": {"namespace": "AWS/EC2",
        "metricData": {"metricName": "m", "value": 1}}}}),
    );
    msgs.push(
        json!({"topic": "cloudwatch/metric/put", "payload": {"request": {"namespace": "Bad",
        "metricData": {"metricName": "m", "value": "high"}}}}),
    );
    msgs.push(
        json!({"topic": "cloudwatch/metric/put", "payload": {"request": {"namespace": "Bad",
        "metricData": {"metricName": "m", "value": 1, "unit": "Parsecs"}}}}),
    );
    msgs.push(json!({"topic": "cloudwatch/metric/put", "payload": "{not json"}));
    feed(work.path(), &msgs);

    // 20 at once, the other 5 and "Other" at the interval: 3 calls at least.
    let got = wait_for(LIMIT, || {
        let s = statuses(work.path());
        let ok = s.iter().filter(|r| r["status"] == "success").count();
        let fail = s.iter().filter(|r| r["status"] == "fail").count();
        (ok >= 3 && fail >= 4).then_some(s)
    });
    let Some(s) = got else {
        panic!("statuses: {:?}\n{}", statuses(work.path()), read(&log));
    };
    for r in s.iter().filter(|r| r["status"] == "success") {
        assert!(
            r["cloudwatch_rid"].as_str().is_some_and(|x| !x.is_empty()),
            "{r}"
        );
        assert!(
            r["namespace"] == "Evergreen/Test" || r["namespace"] == "Other",
            "{r}"
        );
    }
    let fails: Vec<&Value> = s.iter().filter(|r| r["status"] == "fail").collect();
    for (ns, needle) in [
        (Some("AWS/EC2"), "must not start with AWS/"),
        (Some("Bad"), "request.metricData.value must be a number"),
        (Some("Bad"), "request.metricData.unit `Parsecs`"),
        (None, "not JSON"),
    ] {
        assert!(
            fails.iter().any(|r| r["error"] == "InvalidInputException"
                && r.get("namespace").and_then(Value::as_str) == ns
                && r["error_message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(needle)),
            "{needle}: {fails:?}"
        );
    }

    let (count, max) = stats(&moto, "Evergreen/Test", "latency", &CORE_DIMS);
    assert_eq!(
        (count, max),
        (25.0, 24.0),
        "all 25 metrics, with the coreName dimension"
    );
    assert_eq!(stats(&moto, "Other", "temp", &CORE_DIMS), (1.0, 7.5));
    let listed = query(
        &moto,
        "ListMetrics",
        &[("Namespace", "Evergreen/Test".to_string())],
    );
    let core = regex::Regex::new(r"<Name>coreName</Name>\s*<Value>test-core</Value>").expect("re");
    assert!(
        core.is_match(&listed),
        "ListMetrics shows coreName=test-core:\n{listed}"
    );
    assert!(!query(
        &moto,
        "ListMetrics",
        &[("Namespace", "AWS/EC2".to_string())]
    )
    .contains("<MetricName>"));
}

#[test]
fn cloudwatch_endpoint_down_then_up_then_503_and_throttling_lose_nothing() {
    let Some(moto) = Moto::start() else { return };
    let work = tempfile::tempdir().expect("tmp");
    let port = free_port().expect("port");
    let g = cloudwatch_group(work.path(), "0");
    let rt = Runtime::start_config(
        &g,
        &aws_core_config(&format!("http://127.0.0.1:{port}")),
        &[],
    );
    let log = rt.log_path("user/us-east-1/aws/CloudWatchMetrics.log");

    feed(
        work.path(),
        &(0..10)
            .map(|i| metric("Down", "m", f64::from(i)))
            .collect::<Vec<_>>(),
    );
    let retried = wait_for(LIMIT, || read(&log).contains("will retry").then_some(()));
    assert!(
        retried.is_some(),
        "connection refused is retried:\n{}",
        read(&log)
    );
    assert!(statuses(work.path()).is_empty(), "no status while retrying");

    let proxy = FaultProxy::start_on(port, moto.port()).expect("proxy");
    proxy.fail_next(2, Fault::unavailable());
    proxy.fail_next(2, Fault::throttling_xml());
    let arrived = wait_for(LIMIT, || {
        (stats(&moto, "Down", "m", &CORE_DIMS).0 >= 10.0).then_some(())
    });
    assert!(
        arrived.is_some(),
        "metrics arrive after the faults:\n{}",
        read(&log)
    );
    assert_eq!(
        stats(&moto, "Down", "m", &CORE_DIMS),
        (10.0, 9.0),
        "each once"
    );
    assert_eq!(proxy.faults_served(), 4);
    let s = statuses(work.path());
    assert!(
        !s.is_empty() && s.iter().all(|r| r["status"] == "success"),
        "{s:?}"
    );
    let text = read(&log);
    assert!(
        text.contains("Throttling") && text.contains("will retry"),
        "{text}"
    );
}

#[test]
fn cloudwatch_full_buffer_drops_the_oldest_of_the_namespace() {
    let Some(moto) = Moto::start() else { return };
    let work = tempfile::tempdir().expect("tmp");
    let port = free_port().expect("port");
    let g = cloudwatch_group(work.path(), "1");
    let rt = Runtime::start_config(&g, &burst_config(port), &[]);
    let log = rt.log_path("user/us-east-1/aws/CloudWatchMetrics.log");

    // 2000 fill the buffer while the endpoint is down.
    feed(
        work.path(),
        &(0..2000)
            .map(|i| metric("Full", "m", f64::from(i)))
            .collect::<Vec<_>>(),
    );
    // A namespace with nothing to replace is refused…
    feed(
        work.path(),
        &(0..5)
            .map(|i| metric("Late", "m", f64::from(i)))
            .collect::<Vec<_>>(),
    );
    let refused = wait_for(LIMIT, || {
        let s = statuses(work.path());
        (s.len() >= 5).then_some(s)
    });
    let Some(refused) = refused else {
        panic!("no refusals: {:?}\n{}", statuses(work.path()), read(&log));
    };
    assert_eq!(refused.len(), 5, "{refused:?}");
    for r in &refused {
        assert_eq!(r["status"], "fail");
        assert_eq!(r["error"], "BufferFullException", "{r}");
        assert_eq!(r["namespace"], "Late", "{r}");
    }
    // …and ten more of the full namespace replace its oldest.
    feed(
        work.path(),
        &(2000..2010)
            .map(|i| metric("Full", "m", f64::from(i)))
            .collect::<Vec<_>>(),
    );
    let dropped = wait_for(LIMIT, || {
        read(&log)
            .contains("dropped the oldest queued metric")
            .then_some(())
    });
    assert!(dropped.is_some(), "drops logged:\n{}", read(&log));

    let _proxy = FaultProxy::start_on(port, moto.port()).expect("proxy");
    let arrived = wait_for(Duration::from_secs(60), || {
        let (count, max) = stats(&moto, "Full", "m", &CORE_DIMS);
        (count >= 2000.0 && max >= 2009.0).then_some(())
    });
    assert!(
        arrived.is_some(),
        "{:?}\n{}",
        stats(&moto, "Full", "m", &CORE_DIMS),
        read(&log)
    );
    assert_eq!(
        stats(&moto, "Full", "m", &CORE_DIMS),
        (2000.0, 2009.0),
        "2000 kept, the newest among them"
    );
    assert_eq!(stats(&moto, "Late", "m", &CORE_DIMS).0, 0.0);
    assert!(
        read(&log).contains("(1 metrics dropped so far)"),
        "{}",
        read(&log)
    );
}
