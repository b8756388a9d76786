//! Outside input never panics: any configuration text, any address text, any
//! registers a device sends, in any type and byte order.

use evergreen_connector_modbus_tcp::config::{parse_address, Capability};
use evergreen_connector_modbus_tcp::decode::{decode_registers, DstType, SrcType, Transform};
use proptest::prelude::*;

const SRC: [SrcType; 13] = [
    SrcType::Bool,
    SrcType::Int16,
    SrcType::UInt16,
    SrcType::Int32,
    SrcType::UInt32,
    SrcType::Int64,
    SrcType::UInt64,
    SrcType::Float,
    SrcType::Double,
    SrcType::Hexdump,
    SrcType::Ascii,
    SrcType::Utf8,
    SrcType::Iso8859,
];
const DST: [DstType; 4] = [
    DstType::Boolean,
    DstType::Integer,
    DstType::Double,
    DstType::String,
];
const TRANSFORM: [Transform; 4] = [
    Transform::NoSwap,
    Transform::ByteSwap,
    Transform::WordSwap,
    Transform::ByteWordSwap,
];

/// A valid document with one value replaced by `junk`, so parsing gets deep.
fn with_junk(path: usize, junk: &str) -> String {
    let slots = [
        "\"sources\"",
        "\"ModBusTCPSource\"",
        "\"plc\"",
        "{\"type\": \"StreamManager\", \"streamName\": \"s\"}",
        "{\"ipAddress\": \"127.0.0.1\", \"port\": 502}",
        "200",
        "\"40001\"",
        "2",
        "\"float\"",
        "\"wordSwap\"",
        "\"double\"",
        "{\"type\": \"POLL\", \"rate\": 100}",
    ];
    let mut values: Vec<String> = slots.iter().map(|s| s.to_string()).collect();
    values[path % slots.len()] = junk.to_string();
    format!(
        "{{{}: [{{\"type\": {}, \"name\": {}, \"destination\": {}, \"endpoint\": {}, \
         \"minimumInterRequestDuration\": {}, \"propertyGroups\": [{{\"name\": \"g\", \
         \"tagPathDefinitions\": [{{\"tag\": \"t\", \"address\": {}, \"size\": {}, \
         \"srcDataType\": {}, \"transformation\": {}, \"dstDataType\": {}}}], \"scanMode\": {}}}]}}]}}",
        values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7],
        values[8], values[9], values[10], values[11]
    )
}

proptest! {
    #[test]
    fn any_text_is_a_configuration_or_errors(text in ".{0,400}") {
        let _ = Capability::parse(&text);
    }

    #[test]
    fn any_value_anywhere_is_a_configuration_or_errors(
        path in 0usize..12,
        junk in prop_oneof![
            Just("null".to_string()), Just("[]".to_string()), Just("{}".to_string()),
            Just("-1".to_string()), Just("1e400".to_string()), Just("\"\"".to_string()),
            Just("18446744073709551616".to_string()), Just("true".to_string()),
            "\"[a-zA-Z0-9/+#]{0,12}\"", "[0-9]{1,8}",
        ],
    ) {
        let text = with_junk(path, &junk);
        if let Err(errors) = Capability::parse(&text) {
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.iter().all(|e| !e.path.is_empty() && !e.message.is_empty()));
        }
    }

    #[test]
    fn any_address_text_parses_or_errors(text in "[0-9a-z-]{0,9}") {
        if let Ok(a) = parse_address(&text) {
            prop_assert!(text.bytes().all(|b| b.is_ascii_digit()));
            let _ = a.offset;
        }
    }

    #[test]
    fn any_registers_decode_or_error(
        regs in proptest::collection::vec(any::<u16>(), 0..10),
        s in 0usize..13, d in 0usize..4, t in 0usize..4,
    ) {
        let (src, dst) = (SRC[s], DST[d]);
        if src.converts_to(dst).is_ok() {
            if let Ok(v) = decode_registers(src, TRANSFORM[t], dst, &regs) {
                // Whatever was decoded is valid JSON (no NaN).
                prop_assert!(!v.to_json().is_null());
            }
        }
    }
}
