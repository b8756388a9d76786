//! The connector's response message on `modbus/adapter/response`, shaped as the reference shows.
//!
//! `{"response":{"status":"success"|"fail","error_message":…,"error":…,"device":…,
//! "operation":…,"payload":{…}},"id":…}`; `error` and `error_message` are
//! present only on failures. See the crate docs for the choices made where
//! the Greengrass guide contradicts itself.

use serde::Serialize;
use serde_json::Value;

use crate::request::{Invalid, Operation, Request};

/// `response.error` on a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorKind {
    /// The device answered with a Modbus exception.
    #[serde(rename = "Exception")]
    Exception,
    /// Nothing usable came back: the request was invalid (never sent), or
    /// the device did not answer in time, or the transport failed.
    #[serde(rename = "No Response")]
    NoResponse,
}

/// The message text of a transaction that got no (usable) answer, as the
/// Python connector (pymodbus's `ModbusIOException`) words it.
pub const NO_RESPONSE_MESSAGE: &str = "[Input/Output] No Response received from the remote unit";

/// `response.payload`: its keys depend on the operation and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    /// ReadCoils / ReadDiscreteInputs: exactly `count` bits, as 1/0.
    Bits { function_code: u8, bits: Vec<u8> },
    /// ReadHoldingRegisters / ReadInputRegisters / ReadWriteMultipleRegisters.
    Registers {
        function_code: u8,
        registers: Vec<u16>,
    },
    /// WriteSingleCoil: the echo, `value` a boolean as in the reference.
    SingleCoil {
        function_code: u8,
        address: u16,
        value: bool,
    },
    /// WriteSingleRegister: the echo.
    SingleRegister {
        function_code: u8,
        address: u16,
        value: u16,
    },
    /// WriteMultipleCoils / WriteMultipleRegisters: address and quantity written.
    Multiple {
        function_code: u8,
        address: u16,
        count: u16,
    },
    /// MaskWriteRegister: the echo (the reference shows only the masks;
    /// the address is added, as in pymodbus's response object).
    Mask {
        function_code: u8,
        address: u16,
        and_mask: u16,
        or_mask: u16,
    },
    /// A Modbus exception: request function code + 128, and the code.
    Exception {
        function_code: u8,
        exception_code: u8,
    },
    /// No Response: the message again.
    Error { error: String },
}

/// One response, ready to serialise with [`Response::to_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
    /// The device id as given (a number normally; whatever arrived when
    /// the request was invalid, `null` if absent).
    pub device: Value,
    /// The operation name as given (see `device`).
    pub operation: Value,
    pub payload: Payload,
    /// The request's `id` (outside `response` on the wire).
    #[serde(skip)]
    pub id: Value,
}

/// `response.status`: the wire values the guide's JSON examples use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Fail,
}

#[derive(Serialize)]
struct Wire<'a> {
    response: &'a Response,
    id: &'a Value,
}

impl Response {
    /// A successful transaction.
    pub fn success(req: &Request, payload: Payload) -> Response {
        Response {
            status: Status::Success,
            error_message: None,
            error: None,
            device: Value::from(req.device),
            operation: Value::from(req.operation.name()),
            payload,
            id: Value::from(req.id.as_str()),
        }
    }

    /// The device answered with Modbus exception `code`.
    pub fn exception(req: &Request, code: u8) -> Response {
        Response {
            status: Status::Fail,
            error_message: Some(exception_name(code).to_string()),
            error: Some(ErrorKind::Exception),
            device: Value::from(req.device),
            operation: Value::from(req.operation.name()),
            payload: Payload::Exception {
                function_code: req.operation.function_code() | 0x80,
                exception_code: code,
            },
            id: Value::from(req.id.as_str()),
        }
    }

    /// A valid request that got no usable answer; `message` is normally
    /// [`NO_RESPONSE_MESSAGE`], or says why the request was not sent.
    pub fn no_response(req: &Request, message: impl Into<String>) -> Response {
        Response::invalid(
            Value::from(req.id.as_str()),
            Value::from(req.device),
            Value::from(req.operation.name()),
            message,
        )
    }

    /// A request that failed validation: never sent, reported as
    /// "No Response" with the reason, echoing what could be read.
    pub fn invalid(
        id: Value,
        device: Value,
        operation: Value,
        message: impl Into<String>,
    ) -> Response {
        let message = message.into();
        Response {
            status: Status::Fail,
            error_message: Some(message.clone()),
            error: Some(ErrorKind::NoResponse),
            device,
            operation,
            payload: Payload::Error { error: message },
            id,
        }
    }

    /// The payload of a successful answer to `op` from the values read.
    pub fn read_payload(
        op: &Operation,
        bits: Option<Vec<bool>>,
        registers: Option<Vec<u16>>,
    ) -> Payload {
        let function_code = op.function_code();
        match (bits, registers) {
            (Some(bits), _) => Payload::Bits {
                function_code,
                bits: bits.into_iter().map(u8::from).collect(),
            },
            (None, Some(registers)) => Payload::Registers {
                function_code,
                registers,
            },
            (None, None) => Payload::Registers {
                function_code,
                registers: Vec::new(),
            },
        }
    }

    /// The echo payload of a successful write.
    pub fn write_payload(op: &Operation) -> Payload {
        let function_code = op.function_code();
        match op {
            Operation::WriteSingleCoil { address, value } => Payload::SingleCoil {
                function_code,
                address: *address,
                value: *value,
            },
            Operation::WriteSingleRegister { address, value } => Payload::SingleRegister {
                function_code,
                address: *address,
                value: *value,
            },
            Operation::WriteMultipleCoils { address, values } => Payload::Multiple {
                function_code,
                address: *address,
                count: values.len() as u16,
            },
            Operation::WriteMultipleRegisters { address, values } => Payload::Multiple {
                function_code,
                address: *address,
                count: values.len() as u16,
            },
            Operation::MaskWriteRegister {
                address,
                and_mask,
                or_mask,
            } => Payload::Mask {
                function_code,
                address: *address,
                and_mask: *and_mask,
                or_mask: *or_mask,
            },
            // Reads have no echo; an empty register list keeps the shape.
            _ => Payload::Registers {
                function_code,
                registers: Vec::new(),
            },
        }
    }

    /// The message as published: `{"response":{…},"id":…}`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs, strings and numbers cannot fail.
        serde_json::to_vec(&Wire {
            response: self,
            id: &self.id,
        })
        .unwrap_or_default()
    }

    /// Whether `status` is `success`.
    pub fn is_success(&self) -> bool {
        self.status == Status::Success
    }

    /// `error_message`, when failed.
    pub fn error_message(&self) -> Option<&str> {
        self.error_message.as_deref()
    }
}

/// The standard name of a Modbus exception code, used as `error_message`.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "Illegal Function",
        2 => "Illegal Data Address",
        3 => "Illegal Data Value",
        4 => "Slave Device Failure",
        5 => "Acknowledge",
        6 => "Slave Device Busy",
        8 => "Memory Parity Error",
        0x0A => "Gateway Path Unavailable",
        0x0B => "Gateway Target Device Failed to Respond",
        _ => "Unknown Exception",
    }
}

/// The failure response to a request that could not be parsed.
impl From<Invalid> for Response {
    fn from(invalid: Invalid) -> Response {
        Response::invalid(
            invalid.id,
            invalid.device,
            invalid.operation,
            invalid.message,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(operation: Operation) -> Request {
        Request {
            id: "TestRequest".into(),
            device: 1,
            operation,
        }
    }

    fn wire(r: &Response) -> Value {
        serde_json::from_slice(&r.to_json()).expect("valid json")
    }

    #[test]
    fn success_matches_the_reference_example() {
        let req = request(Operation::ReadCoils {
            address: 1,
            count: 1,
        });
        let r = Response::success(
            &req,
            Response::read_payload(&req.operation, Some(vec![true]), None),
        );
        assert_eq!(
            wire(&r),
            json!({"response": {"status": "success", "device": 1, "operation": "ReadCoilsRequest",
                    "payload": {"function_code": 1, "bits": [1]}}, "id": "TestRequest"})
        );
        assert!(r.is_success());
    }

    #[test]
    fn exception_matches_the_reference_shape() {
        let req = request(Operation::ReadCoils {
            address: 1,
            count: 1,
        });
        let r = Response::exception(&req, 2);
        assert_eq!(
            wire(&r),
            json!({"response": {"status": "fail", "error_message": "Illegal Data Address", "error": "Exception",
                    "device": 1, "operation": "ReadCoilsRequest",
                    "payload": {"function_code": 129, "exception_code": 2}}, "id": "TestRequest"})
        );
    }

    #[test]
    fn no_response_matches_the_reference_example() {
        let req = request(Operation::ReadCoils {
            address: 1,
            count: 1,
        });
        let r = Response::no_response(&req, NO_RESPONSE_MESSAGE);
        assert_eq!(
            wire(&r),
            json!({"response": {"status": "fail",
                    "error_message": "[Input/Output] No Response received from the remote unit",
                    "error": "No Response", "device": 1, "operation": "ReadCoilsRequest",
                    "payload": {"error": "[Input/Output] No Response received from the remote unit"}},
                   "id": "TestRequest"})
        );
    }

    #[test]
    fn write_echoes() {
        let cases = [
            (
                Operation::WriteSingleCoil {
                    address: 1,
                    value: true,
                },
                json!({"function_code": 5, "address": 1, "value": true}),
            ),
            (
                Operation::WriteSingleRegister {
                    address: 1,
                    value: 7,
                },
                json!({"function_code": 6, "address": 1, "value": 7}),
            ),
            (
                Operation::WriteMultipleCoils {
                    address: 1,
                    values: vec![true, false, false, true],
                },
                json!({"function_code": 15, "address": 1, "count": 4}),
            ),
            (
                Operation::WriteMultipleRegisters {
                    address: 1,
                    values: vec![20, 30, 10],
                },
                json!({"function_code": 16, "address": 1, "count": 3}),
            ),
            (
                Operation::MaskWriteRegister {
                    address: 1,
                    and_mask: 0,
                    or_mask: 8,
                },
                json!({"function_code": 22, "address": 1, "and_mask": 0, "or_mask": 8}),
            ),
        ];
        for (op, want) in cases {
            let req = request(op);
            let r = Response::success(&req, Response::write_payload(&req.operation));
            assert_eq!(wire(&r)["response"]["payload"], want);
        }
    }

    #[test]
    fn invalid_echoes_raw_values() {
        let r = Response::invalid(Value::Null, json!("x"), Value::Null, "Missing id field");
        assert_eq!(
            wire(&r),
            json!({"response": {"status": "fail", "error_message": "Missing id field", "error": "No Response",
                    "device": "x", "operation": null, "payload": {"error": "Missing id field"}}, "id": null})
        );
    }
}
