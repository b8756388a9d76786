//! Every other connector's input parsers: the JSON (or bytes) of each connector's input
//! topics, and the `Parameters` each reads from its group configuration. The first byte
//! picks the parser (a letter, so seed files stay readable; any other byte picks one by
//! value); the rest is its input. Where a parser gives a status message to publish, that
//! message must be JSON.
//!
//! | byte | parser |
//! |---|---|
//! | `b` | Kinesis Firehose binary input: `<topic>\0<payload>` |
//! | `c` | CloudWatch Metrics `cloudwatch/metric/put` |
//! | `d` | Device Defender: the cloud's answers to its metrics |
//! | `f` | Kinesis Firehose `kinesisfirehose/message`, and a stream ARN |
//! | `i` | IoT Analytics input: `<topic>\0<payload>` |
//! | `k` | ServiceNow credentials secret text |
//! | `l` | Message Log rendering |
//! | `m` | Modbus-TCP request (routed with no usable source) |
//! | `n` | ServiceNow `servicenow/metricbase/metric` |
//! | `p` | every connector's `Parameters`: a JSON object of strings |
//! | `r` | Modbus-TCP register decoding: `<src>\0<transform>\0<dst>\0<registers, big-endian>` |
//! | `s` | SNS `sns/message` |
//! | `t` | Twilio `twilio/txt` and `twilio/call` |
//! | `u` | Splunk `splunk/logs/put` |
//! | `w` | Modbus-TCP `CapabilityConfiguration` |

#![no_main]

use std::collections::BTreeMap;

use evergreen_ipc::ComponentConfig;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const PARSERS: &[u8] = b"bcdfiklmnprstuw";

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let pick = if PARSERS.contains(&pick) {
        pick
    } else {
        PARSERS[usize::from(pick) % PARSERS.len()]
    };
    match pick {
        b'b' => firehose_binary(input),
        b'c' => cloudwatch(input),
        b'd' => device_defender(input),
        b'f' => firehose_json(input),
        b'i' => iot_analytics(input),
        b'k' => servicenow_credentials(input),
        b'l' => message_log(input),
        b'm' => modbus_tcp_request(input),
        b'n' => servicenow(input),
        b'p' => parameters(input),
        b'r' => modbus_tcp_registers(input),
        b's' => sns(input),
        b't' => twilio(input),
        b'u' => splunk(input),
        b'w' => modbus_tcp_capability(input),
        _ => unreachable!("picked from PARSERS"),
    }
});

/// `<topic>\0<payload>`, the topic UTF-8.
fn topic_and_payload(input: &[u8]) -> Option<(&str, &[u8])> {
    let nul = input.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&input[..nul]).ok()?, &input[nul + 1..]))
}

fn json(value: &Value) {
    let text = value.to_string();
    let back: Value = serde_json::from_str(&text).expect("a status is JSON");
    // serde_json writes what it reads back (floats included: ryu round-trips).
    assert_eq!(&back, value);
}

fn firehose_binary(input: &[u8]) {
    use evergreen_connector_kinesis_firehose::request;
    if let Some((topic, payload)) = topic_and_payload(input) {
        let _ = request::is_binary(topic);
        let _ = request::binary_id(topic);
        let _ = request::parse_binary(topic, payload.to_vec());
    }
}

fn firehose_json(input: &[u8]) {
    use evergreen_connector_kinesis_firehose::request;
    let _ = request::parse_json(input);
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = request::StreamArn::parse(text);
    }
}

fn cloudwatch(input: &[u8]) {
    let _ =
        evergreen_connector_cloudwatch_metrics::request::parse(input, "core", 1_700_000_000_000);
}

fn device_defender(input: &[u8]) {
    for topic in [
        "$aws/things/core/defender/metrics/json/accepted",
        "$aws/things/core/defender/metrics/json/rejected",
    ] {
        let _ = evergreen_connector_device_defender::describe_answer(topic, input);
    }
}

fn iot_analytics(input: &[u8]) {
    use evergreen_connector_iot_analytics::{read_input, IdGenerator};
    if let Some((topic, payload)) = topic_and_payload(input) {
        let mut ids = IdGenerator::default();
        let _ = read_input(topic, payload, None, &mut ids);
        let _ = read_input(topic, payload, Some("default_channel"), &mut ids);
    }
}

fn servicenow_credentials(input: &[u8]) {
    if let Ok(text) = std::str::from_utf8(input) {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-sn-abc";
        if let Err(message) = evergreen_connector_servicenow::parse_credentials(arn, text) {
            // The secret's text must never reach a log line.
            assert!(text.len() < 8 || !message.contains(text), "{message}");
        }
    }
}

fn message_log(input: &[u8]) {
    for max in [0, 1, 3, 16, 4096] {
        let line = evergreen_connector_message_log::describe(input, max);
        let _ = line;
    }
}

fn modbus_tcp_request(input: &[u8]) {
    use evergreen_connector_modbus_tcp::adapter::{route, Routed, Targets};
    match route(input, &Targets::InvalidConfiguration) {
        Routed::Answer(response) => {
            assert!(!response.is_success());
            let value: Value = serde_json::from_slice(&response.to_json()).expect("JSON");
            json(&value);
        }
        Routed::Pending(_) => panic!("no source can take a request"),
    }
}

fn modbus_tcp_registers(input: &[u8]) {
    use evergreen_connector_modbus_tcp::decode::{decode_registers, DstType, SrcType, Transform};
    let mut parts = input.splitn(4, |b| *b == 0);
    let (Some(src), Some(transform), Some(dst), Some(regs)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    let (Some(src), Some(transform), Some(dst)) = (text(src), text(transform), text(dst)) else {
        return;
    };
    let (Ok(src), Ok(transform), Ok(dst)) = (
        SrcType::parse(&src),
        Transform::parse(&transform),
        DstType::parse(&dst),
    ) else {
        return;
    };
    let registers: Vec<u16> = regs
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let _ = transform.bytes(&registers);
    if src.converts_to(dst).is_ok() {
        if let Ok(value) = decode_registers(src, transform, dst, &registers) {
            let _ = value.to_json();
        }
    }
}

fn modbus_tcp_capability(input: &[u8]) {
    if let Ok(text) = std::str::from_utf8(input) {
        if let Ok(capability) = evergreen_connector_modbus_tcp::config::Capability::parse(text) {
            // Whatever validated must plan into reads.
            for source in &capability.sources {
                for group in &source.groups {
                    let _ = evergreen_connector_modbus_tcp::plan::plan(&group.tags);
                }
            }
        }
    }
}

fn servicenow(input: &[u8]) {
    use evergreen_connector_servicenow::{group, parse_input, success_status};
    if let Ok(metric) = parse_input(input, "default_table", "2024-01-01T00:00:00") {
        for series in group(vec![metric]) {
            json(&series.body());
            json(&success_status(&series, "2024-01-01T00:00:00", "fuzz"));
        }
    }
}

fn sns(input: &[u8]) {
    use evergreen_connector_sns::parse_request;
    let _ = parse_request(input, None);
    let _ = parse_request(input, Some("arn:aws:sns:us-east-1:123456789012:default"));
}

fn twilio(input: &[u8]) {
    use evergreen_connector_twilio::{parse_request, success_status, CALL_TOPIC, TXT_TOPIC};
    for topic in [TXT_TOPIC, CALL_TOPIC] {
        if let Ok(request) = parse_request(topic, input, Some("+15555550100")) {
            json(&success_status(&request, "queued"));
        }
    }
}

fn splunk(input: &[u8]) {
    use evergreen_connector_splunk::{error_message, parse_input};
    if let Err(invalid) = parse_input(input) {
        json(&error_message(
            "InvalidInput",
            &invalid.message,
            invalid.id.as_deref(),
        ));
    }
}

/// Every connector's settings from a `Parameters` map, as the group gives it.
fn parameters(input: &[u8]) {
    let Ok(map) = serde_json::from_slice::<BTreeMap<String, String>>(input) else {
        return;
    };
    let pairs: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = ComponentConfig::connector(
        "arn:aws:greengrass:us-east-1::/connectors/Fuzz/versions/1",
        &pairs,
    );
    let _ = evergreen_connector_heartbeat::Settings::from_config(&config);
    let _ = evergreen_connector_message_log::max_payload(&config);
    let _ = evergreen_connector_device_defender::Settings::from_config(&config);
    let _ = evergreen_connector_modbus::rtu::Settings::from_config(&config);
    let _ = evergreen_connector_modbus_tcp::Settings::from_config(&config);
    let _ = evergreen_connector_serial_stream::settings::Settings::from_config(&config);
    let _ = evergreen_connector_twilio::Settings::from_config(&config);
    let _ = evergreen_connector_splunk::Settings::from_config(&config);
    let _ = evergreen_connector_servicenow::Settings::from_config(&config);
    let _ = evergreen_connector_sns::Settings::from_config(&config);
    let _ = evergreen_connector_iot_analytics::Settings::from_config(&config);
    let _ = evergreen_connector_kinesis_firehose::Settings::from_config(&config);
    let _ = evergreen_connector_cloudwatch_metrics::Settings::from_config(&config);
}
