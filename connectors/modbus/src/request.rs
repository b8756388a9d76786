//! Parsing and validating a Greengrass Modbus request message into a typed [`Request`].
//!
//! The wire form is `{"request":{"operation":…,"device":…,…},"id":…}`
//! (reference §1). Every check that fails yields the documented
//! "No Response" failure (see [`crate::response::Response::invalid`]) whose
//! message names the bad field, in the style of the Python connector:
//! `Invalid address field. Expected int, got str`. Type names are Python's
//! (`int`, `str`, `float`, `bool`, `list`, `dict`, `NoneType`) because that is
//! what Greengrass users see from the original connector.
//!
//! Ranges are the Modbus application protocol's (V1.1b3), checked here so a
//! request that no device could accept never reaches the bus.

use serde_json::{Map, Value};

/// Largest request message accepted, in bytes. The biggest valid request
/// (1968 coil values) is under 8 KiB even with generous spacing; anything
/// far beyond that is a mistake or abuse, answered without parsing.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest device (unit) id: Modbus serial line addresses are 0–247
/// (0 is broadcast, 248–255 reserved).
pub const MAX_DEVICE: u64 = 247;

/// Quantity limits from the Modbus specification, per function.
pub const MAX_READ_BITS: u16 = 2000;
pub const MAX_READ_REGISTERS: u16 = 125;
pub const MAX_WRITE_COILS: u16 = 1968;
pub const MAX_WRITE_REGISTERS: u16 = 123;
pub const MAX_RW_READ_REGISTERS: u16 = 125;
pub const MAX_RW_WRITE_REGISTERS: u16 = 121;

/// One validated Modbus request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request's `id`, echoed in the response.
    pub id: String,
    /// The target unit id, 0–247 (0 = broadcast, writes only).
    pub device: u8,
    /// What to do.
    pub operation: Operation,
}

/// The ten operations of the Greengrass connector, with validated fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    ReadCoils {
        address: u16,
        count: u16,
    },
    ReadDiscreteInputs {
        address: u16,
        count: u16,
    },
    ReadHoldingRegisters {
        address: u16,
        count: u16,
    },
    ReadInputRegisters {
        address: u16,
        count: u16,
    },
    WriteSingleCoil {
        address: u16,
        value: bool,
    },
    WriteSingleRegister {
        address: u16,
        value: u16,
    },
    WriteMultipleCoils {
        address: u16,
        values: Vec<bool>,
    },
    WriteMultipleRegisters {
        address: u16,
        values: Vec<u16>,
    },
    MaskWriteRegister {
        address: u16,
        and_mask: u16,
        or_mask: u16,
    },
    ReadWriteMultipleRegisters {
        read_address: u16,
        read_count: u16,
        write_address: u16,
        write_registers: Vec<u16>,
    },
}

/// Every operation name accepted in `request.operation`.
pub const OPERATIONS: [&str; 10] = [
    "ReadCoilsRequest",
    "ReadDiscreteInputsRequest",
    "ReadHoldingRegistersRequest",
    "ReadInputRegistersRequest",
    "WriteSingleCoilRequest",
    "WriteSingleRegisterRequest",
    "WriteMultipleCoilsRequest",
    "WriteMultipleRegistersRequest",
    "MaskWriteRegisterRequest",
    "ReadWriteMultipleRegistersRequest",
];

impl Operation {
    /// The Greengrass operation name, e.g. `ReadCoilsRequest`.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::ReadCoils { .. } => OPERATIONS[0],
            Operation::ReadDiscreteInputs { .. } => OPERATIONS[1],
            Operation::ReadHoldingRegisters { .. } => OPERATIONS[2],
            Operation::ReadInputRegisters { .. } => OPERATIONS[3],
            Operation::WriteSingleCoil { .. } => OPERATIONS[4],
            Operation::WriteSingleRegister { .. } => OPERATIONS[5],
            Operation::WriteMultipleCoils { .. } => OPERATIONS[6],
            Operation::WriteMultipleRegisters { .. } => OPERATIONS[7],
            Operation::MaskWriteRegister { .. } => OPERATIONS[8],
            Operation::ReadWriteMultipleRegisters { .. } => OPERATIONS[9],
        }
    }

    /// The Modbus function code.
    pub fn function_code(&self) -> u8 {
        match self {
            Operation::ReadCoils { .. } => 1,
            Operation::ReadDiscreteInputs { .. } => 2,
            Operation::ReadHoldingRegisters { .. } => 3,
            Operation::ReadInputRegisters { .. } => 4,
            Operation::WriteSingleCoil { .. } => 5,
            Operation::WriteSingleRegister { .. } => 6,
            Operation::WriteMultipleCoils { .. } => 15,
            Operation::WriteMultipleRegisters { .. } => 16,
            Operation::MaskWriteRegister { .. } => 22,
            Operation::ReadWriteMultipleRegisters { .. } => 23,
        }
    }

    /// Whether the operation only reads (no broadcast possible).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Operation::ReadCoils { .. }
                | Operation::ReadDiscreteInputs { .. }
                | Operation::ReadHoldingRegisters { .. }
                | Operation::ReadInputRegisters { .. }
                | Operation::ReadWriteMultipleRegisters { .. }
        )
    }

    /// Request plus response bytes of this transaction in RTU framing
    /// (address + PDU + 2 CRC), for wire-time estimates.
    pub fn rtu_frame_bytes(&self) -> (usize, usize) {
        let bits_bytes = |n: u16| usize::from(n).div_ceil(8);
        let (req_pdu, resp_pdu) = match self {
            Operation::ReadCoils { count, .. } | Operation::ReadDiscreteInputs { count, .. } => {
                (5, 2 + bits_bytes(*count))
            }
            Operation::ReadHoldingRegisters { count, .. }
            | Operation::ReadInputRegisters { count, .. } => (5, 2 + 2 * usize::from(*count)),
            Operation::WriteSingleCoil { .. } | Operation::WriteSingleRegister { .. } => (5, 5),
            Operation::WriteMultipleCoils { values, .. } => (6 + values.len().div_ceil(8), 5),
            Operation::WriteMultipleRegisters { values, .. } => (6 + 2 * values.len(), 5),
            Operation::MaskWriteRegister { .. } => (7, 7),
            Operation::ReadWriteMultipleRegisters {
                read_count,
                write_registers,
                ..
            } => (
                10 + 2 * write_registers.len(),
                2 + 2 * usize::from(*read_count),
            ),
        };
        (req_pdu + 3, resp_pdu + 3)
    }
}

/// A request that could not be parsed: why, and whatever `id`, `device` and `operation` could
/// be read, for the failure response that echoes them (`Response::invalid`).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub id: Value,
    pub device: Value,
    pub operation: Value,
    pub message: String,
}

/// Parses one request message. On any problem the error says why, with what
/// could be read; the caller publishes it as the failure response (status
/// `fail`, error `No Response`, payload `{"error": <message>}`).
pub fn parse_request(bytes: &[u8]) -> Result<Request, Box<Invalid>> {
    let fail = |id: &Value, device: &Value, operation: &Value, message: String| {
        Box::new(Invalid {
            id: id.clone(),
            device: device.clone(),
            operation: operation.clone(),
            message,
        })
    };
    let null = Value::Null;
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(fail(
            &null,
            &null,
            &null,
            format!(
                "Invalid request. The message is {} bytes; the limit is {MAX_REQUEST_BYTES}",
                bytes.len()
            ),
        ));
    }
    let root: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(
                &null,
                &null,
                &null,
                format!("Invalid request. Expected a JSON object: {e}"),
            ))
        }
    };
    let Value::Object(root) = root else {
        return Err(fail(
            &null,
            &null,
            &null,
            format!(
                "Invalid request. Expected a JSON object, got {}",
                type_name(&root)
            ),
        ));
    };
    // What can be echoed, whatever else is wrong.
    let id = root.get("id").cloned().unwrap_or(Value::Null);
    let inner = root.get("request");
    let echo = |key: &str| {
        inner
            .and_then(|r| r.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (device_echo, operation_echo) = (echo("device"), echo("operation"));
    let fail = |message: String| Err(fail(&id, &device_echo, &operation_echo, message));

    let id = match root.get("id") {
        None => return fail("Missing id field".into()),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return fail(format!(
                "Invalid id field. Expected str, got {}",
                type_name(other)
            ))
        }
    };
    let request = match inner {
        None => return fail("Missing request field".into()),
        Some(Value::Object(r)) => r,
        Some(other) => {
            return fail(format!(
                "Invalid request field. Expected dict, got {}",
                type_name(other)
            ))
        }
    };
    let operation = match request.get("operation") {
        None => return fail("Missing operation field".into()),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return fail(format!(
                "Invalid operation field. Expected str, got {}",
                type_name(other)
            ))
        }
    };
    let fields = Fields(request);
    let device = match fields.int("device", 0, MAX_DEVICE) {
        Ok(d) => d as u8,
        Err(m) => return fail(m),
    };
    let operation = match parse_operation(operation, &fields) {
        Ok(op) => op,
        Err(m) => return fail(m),
    };
    if device == 0 && operation.is_read() {
        return fail(format!(
            "Invalid device field. Device 0 is the broadcast address, which only write operations may use; \
             {} reads",
            operation.name()
        ));
    }
    Ok(Request {
        id,
        device,
        operation,
    })
}

fn parse_operation(name: &str, f: &Fields<'_>) -> Result<Operation, String> {
    let read = |max: u16| -> Result<(u16, u16), String> {
        let address = f.address("address")?;
        let count = f.count("count", max)?;
        span("count", address, count)?;
        Ok((address, count))
    };
    Ok(match name {
        "ReadCoilsRequest" => {
            let (address, count) = read(MAX_READ_BITS)?;
            Operation::ReadCoils { address, count }
        }
        "ReadDiscreteInputsRequest" => {
            let (address, count) = read(MAX_READ_BITS)?;
            Operation::ReadDiscreteInputs { address, count }
        }
        "ReadHoldingRegistersRequest" => {
            let (address, count) = read(MAX_READ_REGISTERS)?;
            Operation::ReadHoldingRegisters { address, count }
        }
        "ReadInputRegistersRequest" => {
            let (address, count) = read(MAX_READ_REGISTERS)?;
            Operation::ReadInputRegisters { address, count }
        }
        "WriteSingleCoilRequest" => Operation::WriteSingleCoil {
            address: f.address("address")?,
            value: f.bit("value")?,
        },
        "WriteSingleRegisterRequest" => Operation::WriteSingleRegister {
            address: f.address("address")?,
            value: f.word("value")?,
        },
        "WriteMultipleCoilsRequest" => {
            let address = f.address("address")?;
            let values = f.list("values", MAX_WRITE_COILS, |key, i, v| bit(key, Some(i), v))?;
            span("values", address, values.len() as u16)?;
            Operation::WriteMultipleCoils { address, values }
        }
        "WriteMultipleRegistersRequest" => {
            let address = f.address("address")?;
            let values = f.list("values", MAX_WRITE_REGISTERS, |key, i, v| {
                word(key, Some(i), v)
            })?;
            span("values", address, values.len() as u16)?;
            Operation::WriteMultipleRegisters { address, values }
        }
        "MaskWriteRegisterRequest" => Operation::MaskWriteRegister {
            address: f.address("address")?,
            and_mask: f.word("and_mask")?,
            or_mask: f.word("or_mask")?,
        },
        "ReadWriteMultipleRegistersRequest" => {
            let read_address = f.address("read_address")?;
            let read_count = f.count("read_count", MAX_RW_READ_REGISTERS)?;
            span("read_count", read_address, read_count)?;
            let write_address = f.address("write_address")?;
            let write_registers =
                f.list("write_registers", MAX_RW_WRITE_REGISTERS, |key, i, v| {
                    word(key, Some(i), v)
                })?;
            span(
                "write_registers",
                write_address,
                write_registers.len() as u16,
            )?;
            Operation::ReadWriteMultipleRegisters {
                read_address,
                read_count,
                write_address,
                write_registers,
            }
        }
        other => {
            return Err(format!(
                "Invalid operation field. Unknown operation {other:?}; expected one of {}",
                OPERATIONS.join(", ")
            ))
        }
    })
}

/// The fields of `request`, read with the connector's messages.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Result<&Value, String> {
        self.0
            .get(key)
            .ok_or_else(|| format!("Missing {key} field"))
    }

    fn int(&self, key: &str, min: u64, max: u64) -> Result<u64, String> {
        int(key, None, self.get(key)?, min, max)
    }

    fn address(&self, key: &str) -> Result<u16, String> {
        Ok(self.int(key, 0, 65535)? as u16)
    }

    fn word(&self, key: &str) -> Result<u16, String> {
        word(key, None, self.get(key)?)
    }

    fn bit(&self, key: &str) -> Result<bool, String> {
        bit(key, None, self.get(key)?)
    }

    fn count(&self, key: &str, max: u16) -> Result<u16, String> {
        Ok(self.int(key, 1, u64::from(max))? as u16)
    }

    fn list<T>(
        &self,
        key: &str,
        max: u16,
        item: impl Fn(&str, usize, &Value) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let Value::Array(items) = self.get(key)? else {
            return Err(format!(
                "Invalid {key} field. Expected list, got {}",
                type_name(self.get(key)?)
            ));
        };
        if items.is_empty() || items.len() > usize::from(max) {
            return Err(format!(
                "Invalid {key} field. Expected 1-{max} items, got {}",
                items.len()
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| item(key, i, v))
            .collect()
    }
}

fn at(index: Option<usize>) -> String {
    index.map(|i| format!(" at index {i}")).unwrap_or_default()
}

/// An integer in `min..=max`. Floats (even `1.0`) and booleans are
/// refused: the Python connector checks for `int`, and a bool as an
/// address is surely a mistake.
fn int(key: &str, index: Option<usize>, v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let Value::Number(n) = v else {
        return Err(format!(
            "Invalid {key} field. Expected int{}, got {}",
            at(index),
            type_name(v)
        ));
    };
    match (n.as_u64(), n.as_i64()) {
        (Some(x), _) if (min..=max).contains(&x) => Ok(x),
        (Some(_), _) | (None, Some(_)) => Err(format!(
            "Invalid {key} field. Expected {min}-{max}{}, got {n}",
            at(index)
        )),
        (None, None) => Err(format!(
            "Invalid {key} field. Expected int{}, got float",
            at(index)
        )),
    }
}

fn word(key: &str, index: Option<usize>, v: &Value) -> Result<u16, String> {
    Ok(int(key, index, v, 0, 65535)? as u16)
}

/// A coil value: 1/0 as the reference shows, or true/false.
fn bit(key: &str, index: Option<usize>, v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(_) => Ok(int(key, index, v, 0, 1)? == 1),
        other => Err(format!(
            "Invalid {key} field. Expected 1, 0, true or false{}, got {}",
            at(index),
            type_name(other)
        )),
    }
}

/// A block starting at `address` must end inside the 65536-address space.
fn span(key: &str, address: u16, count: u16) -> Result<(), String> {
    if u32::from(address) + u32::from(count) > 65536 {
        return Err(format!(
            "Invalid {key} field. {count} items from address {address} run past address 65535"
        ));
    }
    Ok(())
}

/// Python's name for a JSON value's type, as the original connector reports it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Request, Box<crate::response::Response>> {
        parse_request(v.to_string().as_bytes())
            .map_err(|invalid| Box::new(crate::response::Response::from(*invalid)))
    }

    fn msg(v: Value) -> String {
        match parse(v.clone()) {
            Ok(r) => panic!("{v} parsed as {r:?}"),
            Err(resp) => {
                let wire: Value = evergreen_connector_kit::testing::json(&resp.to_json());
                assert_eq!(wire["response"]["status"], "fail");
                assert_eq!(wire["response"]["error"], "No Response");
                assert_eq!(
                    wire["response"]["payload"]["error"],
                    wire["response"]["error_message"]
                );
                wire["response"]["error_message"]
                    .as_str()
                    .expect("message")
                    .to_string()
            }
        }
    }

    fn req(fields: Value) -> Value {
        json!({"request": fields, "id": "t"})
    }

    #[test]
    fn all_ten_operations_parse() {
        let cases = [
            (
                json!({"operation":"ReadCoilsRequest","device":1,"address":1,"count":1}),
                Operation::ReadCoils {
                    address: 1,
                    count: 1,
                },
            ),
            (
                json!({"operation":"ReadDiscreteInputsRequest","device":1,"address":0,"count":2000}),
                Operation::ReadDiscreteInputs {
                    address: 0,
                    count: 2000,
                },
            ),
            (
                json!({"operation":"ReadHoldingRegistersRequest","device":1,"address":65410,"count":125}),
                Operation::ReadHoldingRegisters {
                    address: 65410,
                    count: 125,
                },
            ),
            (
                json!({"operation":"ReadInputRegistersRequest","device":247,"address":3,"count":2}),
                Operation::ReadInputRegisters {
                    address: 3,
                    count: 2,
                },
            ),
            (
                json!({"operation":"WriteSingleCoilRequest","device":1,"address":1,"value":1}),
                Operation::WriteSingleCoil {
                    address: 1,
                    value: true,
                },
            ),
            (
                json!({"operation":"WriteSingleCoilRequest","device":1,"address":1,"value":false}),
                Operation::WriteSingleCoil {
                    address: 1,
                    value: false,
                },
            ),
            (
                json!({"operation":"WriteSingleRegisterRequest","device":1,"address":1,"value":65535}),
                Operation::WriteSingleRegister {
                    address: 1,
                    value: 65535,
                },
            ),
            (
                json!({"operation":"WriteMultipleCoilsRequest","device":1,"address":1,"values":[1,0,0,true]}),
                Operation::WriteMultipleCoils {
                    address: 1,
                    values: vec![true, false, false, true],
                },
            ),
            (
                json!({"operation":"WriteMultipleRegistersRequest","device":0,"address":1,"values":[20,30,10]}),
                Operation::WriteMultipleRegisters {
                    address: 1,
                    values: vec![20, 30, 10],
                },
            ),
            (
                json!({"operation":"MaskWriteRegisterRequest","device":1,"address":1,"and_mask":175,"or_mask":1}),
                Operation::MaskWriteRegister {
                    address: 1,
                    and_mask: 175,
                    or_mask: 1,
                },
            ),
            (
                json!({"operation":"ReadWriteMultipleRegistersRequest","device":1,"read_address":1,
                       "read_count":2,"write_address":3,"write_registers":[10,20]}),
                Operation::ReadWriteMultipleRegisters {
                    read_address: 1,
                    read_count: 2,
                    write_address: 3,
                    write_registers: vec![10, 20],
                },
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (fields, want) in cases {
            let r = parse(req(fields.clone())).unwrap_or_else(|e| panic!("{fields}: {e:?}"));
            assert_eq!(r.operation, want);
            assert_eq!(r.id, "t");
            assert_eq!(Value::from(r.device), fields["device"]);
            assert_eq!(r.operation.name(), fields["operation"]);
            seen.insert(r.operation.function_code());
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6, 15, 16, 22, 23]
        );
    }

    #[test]
    fn wrong_types_name_the_field_python_style() {
        let m = msg(req(
            json!({"operation":"ReadCoilsRequest","device":1,"address":"1","count":1}),
        ));
        assert_eq!(m, "Invalid address field. Expected int, got str");
        let m = msg(req(
            json!({"operation":"ReadCoilsRequest","device":1,"address":1,"count":1.5}),
        ));
        assert_eq!(m, "Invalid count field. Expected int, got float");
        let m = msg(req(
            json!({"operation":"ReadCoilsRequest","device":1,"address":1.0,"count":1}),
        ));
        assert_eq!(m, "Invalid address field. Expected int, got float");
        let m = msg(req(
            json!({"operation":"ReadCoilsRequest","device":true,"address":1,"count":1}),
        ));
        assert_eq!(m, "Invalid device field. Expected int, got bool");
        let m = msg(req(
            json!({"operation":"ReadCoilsRequest","device":null,"address":1,"count":1}),
        ));
        assert_eq!(m, "Invalid device field. Expected int, got NoneType");
        let m = msg(req(json!({"operation":1,"device":1})));
        assert_eq!(m, "Invalid operation field. Expected str, got int");
        let m = msg(json!({"request": [1], "id": "t"}));
        assert_eq!(m, "Invalid request field. Expected dict, got list");
        let m = msg(
            json!({"request": {"operation":"ReadCoilsRequest","device":1,"address":1,"count":1}, "id": 7}),
        );
        assert_eq!(m, "Invalid id field. Expected str, got int");
        let m = msg(req(
            json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":1,"values":"1,2"}),
        ));
        assert_eq!(m, "Invalid values field. Expected list, got str");
        let m = msg(req(
            json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":1,"values":[1,"2"]}),
        ));
        assert_eq!(m, "Invalid values field. Expected int at index 1, got str");
        let m = msg(req(
            json!({"operation":"WriteMultipleCoilsRequest","device":1,"address":1,"values":[1,"on"]}),
        ));
        assert_eq!(
            m,
            "Invalid values field. Expected 1, 0, true or false at index 1, got str"
        );
        let m = msg(req(
            json!({"operation":"WriteSingleCoilRequest","device":1,"address":1,"value":{}}),
        ));
        assert_eq!(
            m,
            "Invalid value field. Expected 1, 0, true or false, got dict"
        );
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(
            msg(
                json!({"request": {"operation":"ReadCoilsRequest","device":1,"address":1,"count":1}})
            ),
            "Missing id field"
        );
        assert_eq!(msg(json!({"id": "t"})), "Missing request field");
        assert_eq!(
            msg(req(json!({"device":1,"address":1,"count":1}))),
            "Missing operation field"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"ReadCoilsRequest","address":1,"count":1})
            )),
            "Missing device field"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"ReadCoilsRequest","device":1,"count":1})
            )),
            "Missing address field"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"ReadInputRegistersRequest","device":1,"address":1,"value":1})
            )),
            "Missing count field",
            "ReadInputRegisters takes count (the reference example's `value` is a doc slip)"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"MaskWriteRegisterRequest","device":1,"address":1,"and_mask":1})
            )),
            "Missing or_mask field"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"ReadWriteMultipleRegistersRequest","device":1,"read_address":1,
                       "read_count":2,"write_address":3})
            )),
            "Missing write_registers field"
        );
        for op in OPERATIONS {
            // Each operation requires more than operation + device.
            let m = msg(req(json!({"operation": op, "device": 1})));
            assert!(m.starts_with("Missing "), "{op}: {m}");
        }
    }

    #[test]
    fn ranges_follow_the_modbus_limits() {
        let read = |op: &str, address: Value, count: Value| {
            msg(req(
                json!({"operation":op,"device":1,"address":address,"count":count}),
            ))
        };
        assert_eq!(
            read("ReadCoilsRequest", json!(65536), json!(1)),
            "Invalid address field. Expected 0-65535, got 65536"
        );
        assert_eq!(
            read("ReadCoilsRequest", json!(-1), json!(1)),
            "Invalid address field. Expected 0-65535, got -1"
        );
        assert_eq!(
            read("ReadCoilsRequest", json!(0), json!(2001)),
            "Invalid count field. Expected 1-2000, got 2001"
        );
        assert_eq!(
            read("ReadDiscreteInputsRequest", json!(0), json!(0)),
            "Invalid count field. Expected 1-2000, got 0"
        );
        assert_eq!(
            read("ReadHoldingRegistersRequest", json!(0), json!(126)),
            "Invalid count field. Expected 1-125, got 126"
        );
        assert_eq!(
            read("ReadInputRegistersRequest", json!(0), json!(126)),
            "Invalid count field. Expected 1-125, got 126"
        );
        assert_eq!(
            read("ReadHoldingRegistersRequest", json!(65530), json!(10)),
            "Invalid count field. 10 items from address 65530 run past address 65535"
        );
        assert_eq!(
            read("ReadCoilsRequest", json!(1), json!(1e30)),
            "Invalid count field. Expected int, got float"
        );
        assert_eq!(
            read("ReadCoilsRequest", json!(1), json!(u64::MAX)),
            format!("Invalid count field. Expected 1-2000, got {}", u64::MAX)
        );
        assert_eq!(
            msg(req(
                json!({"operation":"ReadCoilsRequest","device":248,"address":1,"count":1})
            )),
            "Invalid device field. Expected 0-247, got 248"
        );
        assert!(msg(req(
            json!({"operation":"ReadCoilsRequest","device":0,"address":1,"count":1})
        ))
        .starts_with("Invalid device field. Device 0 is the broadcast address"));
        assert_eq!(
            msg(req(
                json!({"operation":"WriteSingleRegisterRequest","device":1,"address":1,"value":65536})
            )),
            "Invalid value field. Expected 0-65535, got 65536"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"WriteSingleRegisterRequest","device":1,"address":1,"value":-5})
            )),
            "Invalid value field. Expected 0-65535, got -5"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"WriteSingleCoilRequest","device":1,"address":1,"value":2})
            )),
            "Invalid value field. Expected 0-1, got 2"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"MaskWriteRegisterRequest","device":1,"address":1,"and_mask":70000,"or_mask":1})
            )),
            "Invalid and_mask field. Expected 0-65535, got 70000"
        );
        let many = |n: usize| Value::from(vec![1; n]);
        assert_eq!(
            msg(req(
                json!({"operation":"WriteMultipleCoilsRequest","device":1,"address":1,"values":many(1969)})
            )),
            "Invalid values field. Expected 1-1968 items, got 1969"
        );
        assert!(parse(req(
            json!({"operation":"WriteMultipleCoilsRequest","device":1,"address":1,"values":many(1968)})
        ))
        .is_ok());
        assert_eq!(
            msg(req(
                json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":1,"values":many(124)})
            )),
            "Invalid values field. Expected 1-123 items, got 124"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":1,"values":[]})
            )),
            "Invalid values field. Expected 1-123 items, got 0"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":65535,"values":[1,2]})
            )),
            "Invalid values field. 2 items from address 65535 run past address 65535"
        );
        assert_eq!(
            msg(req(
                json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":1,"values":[1,65536]})
            )),
            "Invalid values field. Expected 0-65535 at index 1, got 65536"
        );
        let rw = |rc: Value, wr: Value| {
            msg(req(
                json!({"operation":"ReadWriteMultipleRegistersRequest","device":1,"read_address":1,
                       "read_count":rc,"write_address":1,"write_registers":wr}),
            ))
        };
        assert_eq!(
            rw(json!(126), json!([1])),
            "Invalid read_count field. Expected 1-125, got 126"
        );
        assert_eq!(
            rw(json!(1), many(122)),
            "Invalid write_registers field. Expected 1-121 items, got 122"
        );
    }

    #[test]
    fn malformed_messages_fail_with_what_can_be_echoed() {
        for (bytes, want) in [
            (
                &b"not json"[..],
                "Invalid request. Expected a JSON object: ",
            ),
            (b"", "Invalid request. Expected a JSON object: "),
            (
                b"[1,2]",
                "Invalid request. Expected a JSON object, got list",
            ),
            (b"\"x\"", "Invalid request. Expected a JSON object, got str"),
            (b"\xff\xfe", "Invalid request. Expected a JSON object: "),
        ] {
            let resp =
                crate::response::Response::from(*parse_request(bytes).expect_err("must fail"));
            let wire: Value = evergreen_connector_kit::testing::json(&resp.to_json());
            let m = wire["response"]["error_message"].as_str().unwrap_or("");
            assert!(m.starts_with(want), "{m}");
            assert_eq!(wire["id"], Value::Null);
        }
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        let resp = crate::response::Response::from(*parse_request(&big).expect_err("oversize"));
        assert!(resp
            .error_message()
            .unwrap_or("")
            .contains("the limit is 65536"));

        // The id, device and operation are echoed even when a later field is bad.
        let resp = parse(json!({"request":{"operation":"FooRequest","device":3},"id":"x1"}))
            .expect_err("unknown op");
        let wire: Value = evergreen_connector_kit::testing::json(&resp.to_json());
        assert_eq!(wire["id"], "x1");
        assert_eq!(wire["response"]["device"], 3);
        assert_eq!(wire["response"]["operation"], "FooRequest");
        assert!(wire["response"]["error_message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Invalid operation field. Unknown operation \"FooRequest\""));
    }

    #[test]
    fn frame_sizes() {
        let op = Operation::ReadHoldingRegisters {
            address: 0,
            count: 10,
        };
        // 01 03 aa aa nn nn cc cc / 01 03 14 <20 bytes> cc cc
        assert_eq!(op.rtu_frame_bytes(), (8, 25));
    }
}
