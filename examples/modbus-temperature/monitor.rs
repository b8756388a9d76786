//! `modbus-temperature-monitor`: the function of the Modbus-RTU example group
//! (`examples/modbus-temperature/group.json`). It polls a temperature over the
//! ModbusRTUProtocolAdapter connector and decides what to do with it.
//!
//! Every `POLL_MS` (default 2000) it publishes a `ReadInputRegistersRequest`
//! for input register `TEMPERATURE_REGISTER` (default 0) of device `DEVICE`
//! (default 1) on `modbus/adapter/request`. The value is tenths of a degree
//! Celsius. On each answer on `modbus/adapter/response` it publishes the
//! reading on `factory/line1/temperature`, and it switches a fan (coil
//! `FAN_COIL`, default 0) on with a `WriteSingleCoilRequest` when the
//! temperature rises above `THRESHOLD_C` (default 25.0), and off again below
//! `THRESHOLD_C - 1` (hysteresis, so it does not chatter), announcing each
//! decision on `factory/line1/fan`. Failed answers are logged and retried at
//! the next poll.
//!
//! Built as an example of the connector crate:
//! `cargo build --release -p evergreen-connector-modbus --example modbus-temperature-monitor`.

use std::time::Duration;

use evergreen_ipc::sdk::{Component, Event, Handle};
use serde_json::{json, Value};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let poll = Duration::from_millis(env("POLL_MS", 2000u64));
    let device: u8 = env("DEVICE", 1);
    let register: u16 = env("TEMPERATURE_REGISTER", 0);
    let fan_coil: u16 = env("FAN_COIL", 0);
    let threshold: f64 = env("THRESHOLD_C", 25.0);

    let mut component = Component::connect().await?;
    let handle = component.handle();
    component.ready().await?;
    handle.info(format!(
        "polling input register {register} of device {device} every {} ms; fan (coil {fan_coil}) on above {threshold:.1} C",
        poll.as_millis()
    ));

    let mut ticker = tokio::time::interval(poll);
    let mut seq: u64 = 0;
    // Unknown until the first decision: the fan's state is set explicitly then.
    let mut fan_on: Option<bool> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                seq += 1;
                let request = json!({"request": {"operation": "ReadInputRegistersRequest",
                    "device": device, "address": register, "count": 1}, "id": format!("temperature-{seq}")});
                publish(&handle, "modbus/adapter/request", &request).await;
            }
            event = component.next_event() => match event {
                None | Some(Event::Shutdown { .. }) => break,
                // Only a component that serves a function name gets invokes.
                Some(Event::Invoke(_)) => {}
                Some(Event::Refused { topic, reason }) => handle.warn(format!("publish on {topic} refused: {reason}")),
                Some(Event::Message(m)) => {
                    let Ok(answer) = serde_json::from_slice::<Value>(&m.payload) else {
                        handle.warn("an answer that is not JSON");
                        continue;
                    };
                    let id = answer["id"].as_str().unwrap_or_default();
                    let response = &answer["response"];
                    if response["status"] != "success" {
                        handle.warn(format!("{id}: {} ({})", response["error"], response["error_message"]));
                        continue;
                    }
                    if !id.starts_with("temperature-") {
                        handle.info(format!("{id}: done ({})", response["payload"]));
                        continue;
                    }
                    let Some(raw) = response["payload"]["registers"][0].as_u64() else {
                        handle.warn(format!("{id}: no register in {}", response["payload"]));
                        continue;
                    };
                    let celsius = raw as f64 / 10.0;
                    publish(&handle, "factory/line1/temperature",
                        &json!({"celsius": celsius, "device": device, "id": id})).await;
                    let want = if celsius > threshold {
                        true
                    } else if celsius < threshold - 1.0 {
                        false
                    } else {
                        fan_on.unwrap_or(false)
                    };
                    if fan_on != Some(want) {
                        fan_on = Some(want);
                        seq += 1;
                        let write = json!({"request": {"operation": "WriteSingleCoilRequest",
                            "device": device, "address": fan_coil, "value": u8::from(want)},
                            "id": format!("fan-{seq}")});
                        publish(&handle, "modbus/adapter/request", &write).await;
                        let state = if want { "on" } else { "off" };
                        publish(&handle, "factory/line1/fan",
                            &json!({"fan": state, "celsius": celsius, "threshold": threshold})).await;
                        handle.info(format!("{celsius:.1} C: fan {state}"));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn publish(handle: &Handle, topic: &str, body: &Value) {
    if let Err(e) = handle.publish(topic, body.to_string()).await {
        handle.error(format!("publish on {topic} failed: {e}"));
    }
}
