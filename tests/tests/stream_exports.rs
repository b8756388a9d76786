//! End-to-end: a stream's export to Kinesis Data Streams, set up by an
//! unmodified V1-style Python function through the real `greengrasssdk`
//! 1.6.1 `StreamManagerClient`, run by the runtime's stream manager with
//! the core's credentials, against moto. Documented behaviour checked
//! (the SDK's `KinesisConfig` and `MessageStreamInfo` docs, and
//! `supervisor/streams/src/export/mod.rs`): exports "survive outages": with
//! the endpoint down, nothing is skipped and the export status says why;
//! once it is back every message arrives once, in order, and
//! `lastExportedSequenceNumber` reaches the newest message.
//!
//! Each sink (Kinesis, S3 tasks with multipart, IoT Analytics and SiteWise
//! against SigV4-checking stand-ins) is tested against its peer in
//! `tests/tests/stream_sinks.rs`.

use std::time::Duration;

use evergreen_tests::fault_proxy::FaultProxy;
use evergreen_tests::*;
use serde_json::{json, Value};

const COUNT: usize = 100;

const EXPORTER: &str = r#"
import json
import threading
import time

import greengrasssdk
from greengrasssdk.stream_manager import (
    ExportDefinition, KinesisConfig, MessageStreamDefinition, Persistence, StrategyOnFull,
    StreamManagerClient,
)

iot = greengrasssdk.client('iot-data')


def report(what):
    iot.publish(topic='sm/exporter', payload=json.dumps(what))


def run():
    try:
        client = StreamManagerClient()
        client.create_message_stream(MessageStreamDefinition(
            name='to-kinesis', strategy_on_full=StrategyOnFull.RejectNewData, persistence=Persistence.File,
            export_definition=ExportDefinition(kinesis=[KinesisConfig(
                identifier='k1', kinesis_stream_name='readings', batch_size=10)])))
        for i in range(%COUNT%):
            client.append_message('to-kinesis', b'k%d' % i)
        report({'phase': 'appended'})
        for _ in range(240):
            info = client.describe_message_stream('to-kinesis')
            st = info.export_statuses[0]
            report({'phase': 'status', 'id': st.export_config_identifier,
                    'last': st.last_exported_sequence_number, 'count': st.exported_messages_count,
                    'error': st.error_message})
            time.sleep(0.5)
    except Exception as e:  # noqa: BLE001
        report({'phase': 'error', 'error': type(e).__name__ + ': ' + str(e)})


threading.Thread(target=run).start()


def handler(event, context):
    return
"#;

/// Test-side boto3 against moto: creates the Kinesis stream, or reads every
/// record of its one shard, in order.
const KINESIS: &str = r#"
import json, sys, time
import boto3
k = boto3.client('kinesis', endpoint_url=sys.argv[1], region_name='us-east-1',
                 aws_access_key_id='testing', aws_secret_access_key='testing')
if sys.argv[2] == 'create':
    k.create_stream(StreamName='readings', ShardCount=1)
    print(json.dumps({'created': True}))
else:
    shard = k.describe_stream(StreamName='readings')['StreamDescription']['Shards'][0]['ShardId']
    it = k.get_shard_iterator(StreamName='readings', ShardId=shard, ShardIteratorType='TRIM_HORIZON')['ShardIterator']
    out = []
    for _ in range(50):
        r = k.get_records(ShardIterator=it, Limit=1000)
        out += [[x['Data'].decode(), x['PartitionKey']] for x in r['Records']]
        it = r['NextShardIterator']
        if not r['Records']:
            break
    print(json.dumps(out))
"#;

fn kinesis(moto: &Moto, what: &str) -> Value {
    let out = std::process::Command::new("python3")
        .args(["-c", KINESIS, &moto.url(), what])
        .output()
        .expect("python3");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "boto3 against moto ({what}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_kinesis_export_survives_an_outage_and_delivers_everything_once_in_order() {
    let Some(sdk) = greengrasssdk_or_skip() else {
        return;
    };
    let Some(moto) = Moto::start() else {
        return;
    };
    kinesis(&moto, "create");
    // The runtime's AWS endpoint: a port with nobody on it yet (the outage).
    let endpoint_port = free_port().expect("a free port");
    let work = tempfile::tempdir().expect("tmp");
    let code = python_package(
        work.path(),
        "exporter",
        &sdk,
        &[(
            "exporter.py",
            &EXPORTER.replace("%COUNT%", &COUNT.to_string()),
        )],
    );
    let out = work.path().join("got.jsonl");
    let g = group(
        vec![
            stream_manager_function(free_port().expect("a free port")),
            python_function("exporter", &code, "exporter.handler", true, 30),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![sub("r", &fn_arn("exporter"), "sm/exporter", &fn_arn("rec"))],
    );
    let mut config = aws_core_config(&format!("http://127.0.0.1:{endpoint_port}"));
    merge(
        &mut config,
        &json!({ "coreThing": { "ggDaemonPort": free_port().expect("a free port") } }),
    );
    let rt = Runtime::start_config(&g, &config, &[]);
    let log = || read(&rt.function_log("exporter"));
    let statuses = || {
        on_topic(&out, "sm/exporter")
            .into_iter()
            .filter(|r| r["phase"] == "status")
            .collect::<Vec<_>>()
    };
    let appended = wait_for(Duration::from_secs(60), || {
        on_topic(&out, "sm/exporter")
            .into_iter()
            .find(|r| r["phase"] == "appended" || r["phase"] == "error")
    })
    .unwrap_or_else(|| panic!("no report from the function:\n{}", log()));
    assert_eq!(appended["phase"], "appended", "{appended}");

    // Down: the status says why, and nothing counts as exported.
    let down = wait_for(Duration::from_secs(30), || {
        statuses()
            .into_iter()
            .find(|s| s["error"].as_str().is_some_and(|e| !e.is_empty()))
    })
    .unwrap_or_else(|| {
        panic!(
            "no export error while the endpoint is down: {:?}",
            statuses()
        )
    });
    assert_eq!(down["id"], "k1", "{down}");
    assert!(
        down["last"].as_i64().unwrap_or(-1) < 0,
        "nothing exported yet: {down}"
    );

    // Up again.
    let _proxy =
        FaultProxy::start_on(endpoint_port, moto.port()).expect("proxy on the endpoint's port");
    let done = wait_for(Duration::from_secs(90), || {
        statuses()
            .into_iter()
            .find(|s| s["last"] == COUNT as i64 - 1)
    })
    .unwrap_or_else(|| panic!("the export never caught up: {:?}", statuses().last()));
    assert_eq!(done["count"], COUNT as i64, "{done}");
    let records = kinesis(&moto, "read");
    let want: Vec<Value> = (0..COUNT)
        .map(|i| json!([format!("k{i}"), i.to_string()]))
        .collect();
    assert_eq!(
        records,
        Value::Array(want),
        "every message once, in order, keyed by its sequence number"
    );
}
