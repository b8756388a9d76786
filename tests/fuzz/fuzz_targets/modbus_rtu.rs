//! The Modbus-RTU connector's request parser (`request::parse_request`, the JSON of
//! `modbus/adapter/request`) and its handling of what the device answers: a request that
//! parses runs as one transaction (`exec::execute_with_outcome`, the connector's own code) on
//! tokio-modbus's RTU client over an in-memory serial line, whose device side answers with
//! the fuzzer's bytes; time is paused, so a silent device times out at once.
//!
//! Input: the request JSON, then optionally a NUL byte (never inside JSON text), a flags
//! byte and the answer. Flags bit 0 set: the answer is a PDU that the target frames for the
//! request's device with a correct CRC (so the fuzzer gets past the CRC check); clear: the
//! answer is written to the line as it is. Every response, whatever happened, must be the
//! JSON the connector publishes, echoing the request's id.

#![no_main]

use std::time::Duration;

use evergreen_connector_modbus::exec::{execute_with_outcome, Outcome};
use evergreen_connector_modbus::request::{parse_request, Request};
use evergreen_connector_modbus::response::Response;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let (json, answer) = match data.iter().position(|b| *b == 0) {
        Some(nul) => (&data[..nul], Some(&data[nul + 1..])),
        None => (data, None),
    };
    let request = match parse_request(json) {
        Ok(request) => request,
        Err(invalid) => {
            let id = invalid.id.clone();
            let response = Response::from(*invalid);
            assert!(!response.is_success());
            check_published(&response.to_json(), &id);
            return;
        }
    };
    let _ = request.operation.rtu_frame_bytes();
    let line = match answer {
        Some([flags, rest @ ..]) if flags & 1 == 1 => framed(request.device, rest),
        Some([_, rest @ ..]) => rest.to_vec(),
        _ => Vec::new(),
    };
    let (response, outcome) = transact(&request, &line);
    if outcome != Outcome::Answered {
        assert!(!response.is_success());
    }
    check_published(&response.to_json(), &Value::String(request.id.clone()));
});

/// An RTU frame: device address, PDU, CRC-16/MODBUS (little-endian).
fn framed(device: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(pdu.len() + 3);
    frame.push(device);
    frame.extend_from_slice(pdu);
    let mut crc: u16 = 0xFFFF;
    for b in &frame {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// One transaction against a device that reads the request and writes `answer`, then stays
/// silent with the line open.
fn transact(request: &Request, answer: &[u8]) -> (Response, Outcome) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let (client, mut device) = tokio::io::duplex(4096);
        let mut ctx = tokio_modbus::client::rtu::attach(client);
        let device_side = async move {
            let mut buf = [0u8; 512];
            let _ = device.read(&mut buf).await;
            let _ = device.write_all(answer).await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            done = execute_with_outcome(&mut ctx, request, Duration::from_secs(1)) => done,
            () = device_side => unreachable!("the device side never ends"),
        }
    })
}

/// What the connector publishes on `modbus/adapter/response`.
fn check_published(bytes: &[u8], id: &Value) {
    let value: Value = serde_json::from_slice(bytes).expect("the response is JSON");
    let response = value.get("response").expect("a response object");
    let status = response.get("status").and_then(Value::as_str);
    assert!(matches!(status, Some("success" | "fail")), "{value}");
    assert_eq!(value.get("id").unwrap_or(&Value::Null), id, "{value}");
}
