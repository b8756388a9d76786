//! The JSON the connector publishes: statuses on `serial/+/status/#` and
//! data on `serial/+/read_response/#`, in the guide's shapes. The request's
//! `id` is echoed when the request had one, and left out otherwise.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::request::Encoding;

fn with_id(mut body: Map<String, Value>, id: Option<&Value>) -> Vec<u8> {
    if let Some(id) = id {
        body.insert("id".to_string(), id.clone());
    }
    Value::Object(body).to_string().into_bytes()
}

/// `{"response":{"status":"success"},"id":…}`
pub fn success(id: Option<&Value>) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("response".into(), json!({ "status": "success" }));
    with_id(body, id)
}

/// `{"response":{"status":"fail","error_message":…},"id":…}`
pub fn failure(message: &str, id: Option<&Value>) -> Vec<u8> {
    let mut body = Map::new();
    body.insert(
        "response".into(),
        json!({ "status": "fail", "error_message": message }),
    );
    with_id(body, id)
}

/// `{"data":…,"id":…}`: the bytes as text (`ascii`) or base64 (`hex`).
/// The flag is true when `ascii` data was not valid UTF-8 and some bytes
/// had to be replaced by U+FFFD (JSON strings are Unicode; `hex` carries
/// any bytes).
pub fn read_response(data: &[u8], encoding: Encoding, id: Option<&Value>) -> (Vec<u8>, bool) {
    let (text, replaced) = match encoding {
        Encoding::Ascii => match std::str::from_utf8(data) {
            Ok(text) => (text.to_string(), false),
            Err(_) => (String::from_utf8_lossy(data).into_owned(), true),
        },
        Encoding::Hex => (
            base64::engine::general_purpose::STANDARD.encode(data),
            false,
        ),
    };
    let mut body = Map::new();
    body.insert("data".into(), Value::String(text));
    (with_id(body, id), replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evergreen_connector_kit::testing::json;

    #[test]
    fn shapes() {
        let id = json!("abc123");
        assert_eq!(
            json(&success(Some(&id))),
            json!({"response":{"status":"success"},"id":"abc123"})
        );
        assert_eq!(
            json(&success(None)),
            json!({"response":{"status":"success"}})
        );
        assert_eq!(
            json(&failure("Could not write to port", Some(&id))),
            json!({"response":{"status":"fail","error_message":"Could not write to port"},"id":"abc123"})
        );
        let (body, replaced) = read_response(b"hello", Encoding::Ascii, Some(&id));
        assert_eq!(json(&body), json!({"data":"hello","id":"abc123"}));
        assert!(!replaced);
        let (body, _) = read_response(&[0, 1, 2, 255], Encoding::Hex, None);
        assert_eq!(json(&body), json!({"data":"AAEC/w=="}));
        let (body, replaced) = read_response(&[b'a', 0xff], Encoding::Ascii, None);
        assert_eq!(json(&body), json!({"data":"a\u{fffd}"}));
        assert!(replaced);
    }
}
