//! Running one validated request as one Modbus transaction on any tokio-modbus transport.
//!
//! [`execute`] works on a `tokio_modbus::client::Context`, so the same code
//! serves RTU (serial) and TCP endpoints. The caller owns the transport and
//! serialises transactions; [`execute_with_outcome`] also says whether the
//! transport looks broken, so the caller knows when to reopen it.

use std::borrow::Cow;
use std::time::Duration;

use tokio_modbus::client::{Client, Context};
use tokio_modbus::slave::{Slave, SlaveContext};

use crate::request::{Operation, Request};
use crate::response::{Response, NO_RESPONSE_MESSAGE};

/// The longest wait after a broadcast (device 0), which no device answers:
/// the Modbus serial line specification's "turnaround delay" is 100–200 ms.
pub const BROADCAST_TURNAROUND: Duration = Duration::from_millis(200);

/// How a transaction ended, for the transport's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The device answered (normally or with an exception), or a broadcast
    /// went out.
    Answered,
    /// Nothing arrived within the timeout; the transport may still be fine
    /// (a device that is off or absent looks like this).
    TimedOut,
    /// An answer arrived that does not belong to the request (another
    /// device id or function code); the transport works.
    Mismatch(String),
    /// The transport failed (port vanished, connection reset…): reopen it.
    Transport(String),
}

/// Runs `req` as one transaction, waiting at most `timeout` for the answer,
/// and returns the response to publish.
pub async fn execute(ctx: &mut Context, req: &Request, timeout: Duration) -> Response {
    execute_with_outcome(ctx, req, timeout).await.0
}

/// [`execute`], also reporting how the transaction ended.
pub async fn execute_with_outcome(
    ctx: &mut Context,
    req: &Request,
    timeout: Duration,
) -> (Response, Outcome) {
    ctx.set_slave(Slave(req.device));
    let broadcast = req.device == 0;
    let wait = if broadcast {
        timeout.min(BROADCAST_TURNAROUND)
    } else {
        timeout
    };
    let call = ctx.call(modbus_request(&req.operation));
    let answer = match tokio::time::timeout(wait, call).await {
        // Serial devices never answer a broadcast; a silent turnaround is
        // the normal end of one. (TCP gateways may answer unit 0, handled
        // below like any answer.)
        Err(_) if broadcast => {
            return (
                Response::success(req, Response::write_payload(&req.operation)),
                Outcome::Answered,
            )
        }
        Err(_) => {
            return (
                Response::no_response(req, NO_RESPONSE_MESSAGE),
                Outcome::TimedOut,
            )
        }
        Ok(answer) => answer,
    };
    match answer {
        Ok(Ok(response)) => match payload(req, response) {
            Ok(response) => (response, Outcome::Answered),
            Err(why) => (
                Response::no_response(req, format!("{NO_RESPONSE_MESSAGE} ({why})")),
                Outcome::Mismatch(why),
            ),
        },
        Ok(Err(exception)) => (
            Response::exception(req, u8::from(exception)),
            Outcome::Answered,
        ),
        Err(tokio_modbus::Error::Protocol(e)) => {
            let why = e.to_string();
            (
                Response::no_response(req, format!("{NO_RESPONSE_MESSAGE} ({why})")),
                Outcome::Mismatch(why),
            )
        }
        Err(tokio_modbus::Error::Transport(e)) => {
            let why = format!("transport error: {e}");
            (
                Response::no_response(req, format!("{NO_RESPONSE_MESSAGE} ({why})")),
                Outcome::Transport(why),
            )
        }
    }
}

/// The tokio-modbus request for an operation.
pub fn modbus_request(op: &Operation) -> tokio_modbus::Request<'_> {
    use tokio_modbus::Request as R;
    match op {
        Operation::ReadCoils { address, count } => R::ReadCoils(*address, *count),
        Operation::ReadDiscreteInputs { address, count } => R::ReadDiscreteInputs(*address, *count),
        Operation::ReadHoldingRegisters { address, count } => {
            R::ReadHoldingRegisters(*address, *count)
        }
        Operation::ReadInputRegisters { address, count } => R::ReadInputRegisters(*address, *count),
        Operation::WriteSingleCoil { address, value } => R::WriteSingleCoil(*address, *value),
        Operation::WriteSingleRegister { address, value } => {
            R::WriteSingleRegister(*address, *value)
        }
        Operation::WriteMultipleCoils { address, values } => {
            R::WriteMultipleCoils(*address, Cow::Borrowed(values))
        }
        Operation::WriteMultipleRegisters { address, values } => {
            R::WriteMultipleRegisters(*address, Cow::Borrowed(values))
        }
        Operation::MaskWriteRegister {
            address,
            and_mask,
            or_mask,
        } => R::MaskWriteRegister(*address, *and_mask, *or_mask),
        Operation::ReadWriteMultipleRegisters {
            read_address,
            read_count,
            write_address,
            write_registers,
        } => R::ReadWriteMultipleRegisters(
            *read_address,
            *read_count,
            *write_address,
            Cow::Borrowed(write_registers),
        ),
    }
}

/// The success response for a device's answer, checking it fits the request.
fn payload(req: &Request, answer: tokio_modbus::Response) -> Result<Response, String> {
    use tokio_modbus::Response as A;
    let op = &req.operation;
    let bits = |mut bits: Vec<bool>, count: u16| {
        // Bits come in whole bytes; the padding is not data.
        if bits.len() < usize::from(count) {
            return Err(format!("{} bits answered, {count} asked", bits.len()));
        }
        bits.truncate(usize::from(count));
        Ok(Response::success(
            req,
            Response::read_payload(op, Some(bits), None),
        ))
    };
    let registers = |registers: Vec<u16>, count: u16| {
        if registers.len() != usize::from(count) {
            return Err(format!(
                "{} registers answered, {count} asked",
                registers.len()
            ));
        }
        Ok(Response::success(
            req,
            Response::read_payload(op, None, Some(registers)),
        ))
    };
    match (op, answer) {
        (Operation::ReadCoils { count, .. }, A::ReadCoils(b))
        | (Operation::ReadDiscreteInputs { count, .. }, A::ReadDiscreteInputs(b)) => {
            bits(b, *count)
        }
        (Operation::ReadHoldingRegisters { count, .. }, A::ReadHoldingRegisters(r))
        | (Operation::ReadInputRegisters { count, .. }, A::ReadInputRegisters(r))
        | (
            Operation::ReadWriteMultipleRegisters {
                read_count: count, ..
            },
            A::ReadWriteMultipleRegisters(r),
        ) => registers(r, *count),
        (Operation::WriteSingleCoil { .. }, A::WriteSingleCoil(..))
        | (Operation::WriteSingleRegister { .. }, A::WriteSingleRegister(..))
        | (Operation::WriteMultipleCoils { .. }, A::WriteMultipleCoils(..))
        | (Operation::WriteMultipleRegisters { .. }, A::WriteMultipleRegisters(..))
        | (Operation::MaskWriteRegister { .. }, A::MaskWriteRegister(..)) => {
            // A write's answer echoes the request; the payload is the
            // request's echo as the reference describes.
            Ok(Response::success(req, Response::write_payload(op)))
        }
        (_, other) => Err(format!("unexpected answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    //! Against tokio-modbus's own TCP server as the real peer: exercises
    //! the transport-generic path, including exceptions and timeouts.

    use super::*;
    use crate::request::parse_request;
    use serde_json::{json, Value};
    use std::future;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
    use tokio_modbus::{ExceptionCode, SlaveRequest};

    /// A slave with 100 holding registers (value = 1000 + address) and
    /// 100 coils; other addresses answer Illegal Data Address; device 9
    /// never answers.
    #[derive(Clone)]
    struct Slave {
        registers: Arc<Mutex<Vec<u16>>>,
        coils: Arc<Mutex<Vec<bool>>>,
    }

    impl tokio_modbus::server::Service for Slave {
        type Request = SlaveRequest<'static>;
        type Response = Option<tokio_modbus::Response>;
        type Exception = ExceptionCode;
        type Future = std::pin::Pin<
            Box<dyn future::Future<Output = Result<Self::Response, Self::Exception>> + Send>,
        >;

        fn call(&self, req: Self::Request) -> Self::Future {
            use tokio_modbus::Request as Q;
            use tokio_modbus::Response as A;
            let this = self.clone();
            Box::pin(async move {
                if req.slave == 9 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    return Ok(None);
                }
                let range = |a: u16, n: u16| {
                    let (a, n) = (usize::from(a), usize::from(n));
                    if a + n <= 100 {
                        Ok(a..a + n)
                    } else {
                        Err(ExceptionCode::IllegalDataAddress)
                    }
                };
                let mut regs = this
                    .registers
                    .lock()
                    .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
                let mut coils = this
                    .coils
                    .lock()
                    .map_err(|_| ExceptionCode::ServerDeviceFailure)?;
                Ok(Some(match req.request {
                    Q::ReadHoldingRegisters(a, n) => {
                        A::ReadHoldingRegisters(regs[range(a, n)?].to_vec())
                    }
                    Q::ReadInputRegisters(a, n) => {
                        A::ReadInputRegisters(regs[range(a, n)?].to_vec())
                    }
                    Q::ReadCoils(a, n) => A::ReadCoils(coils[range(a, n)?].to_vec()),
                    Q::ReadDiscreteInputs(a, n) => {
                        A::ReadDiscreteInputs(coils[range(a, n)?].to_vec())
                    }
                    Q::WriteSingleRegister(a, v) => {
                        regs[range(a, 1)?.start] = v;
                        A::WriteSingleRegister(a, v)
                    }
                    Q::WriteSingleCoil(a, v) => {
                        coils[range(a, 1)?.start] = v;
                        A::WriteSingleCoil(a, v)
                    }
                    Q::WriteMultipleRegisters(a, v) => {
                        let r = range(a, v.len() as u16)?;
                        regs[r].copy_from_slice(&v);
                        A::WriteMultipleRegisters(a, v.len() as u16)
                    }
                    Q::WriteMultipleCoils(a, v) => {
                        let r = range(a, v.len() as u16)?;
                        coils[r].copy_from_slice(&v);
                        A::WriteMultipleCoils(a, v.len() as u16)
                    }
                    Q::MaskWriteRegister(a, and, or) => {
                        let i = range(a, 1)?.start;
                        regs[i] = (regs[i] & and) | (or & !and);
                        A::MaskWriteRegister(a, and, or)
                    }
                    Q::ReadWriteMultipleRegisters(ra, rn, wa, w) => {
                        let wr = range(wa, w.len() as u16)?;
                        let rr = range(ra, rn)?;
                        regs[wr].copy_from_slice(&w);
                        A::ReadWriteMultipleRegisters(regs[rr].to_vec())
                    }
                    _ => return Err(ExceptionCode::IllegalFunction),
                }))
            })
        }
    }

    async fn start() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let slave = Slave {
            registers: Arc::new(Mutex::new((0..100).map(|a| 1000 + a).collect())),
            coils: Arc::new(Mutex::new(vec![false; 100])),
        };
        let server = Server::new(listener);
        tokio::spawn(async move {
            let on_connected = |stream, socket_addr| {
                let slave = slave.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, move |_| Ok(Some(slave.clone())))
                }
            };
            let _ = server.serve(&on_connected, |_| {}).await;
        });
        addr
    }

    async fn run(ctx: &mut Context, request: Value) -> Value {
        let req = parse_request(request.to_string().as_bytes()).expect("valid request");
        let resp = execute(ctx, &req, Duration::from_millis(500)).await;
        evergreen_connector_kit::testing::json(&resp.to_json())
    }

    fn op(fields: Value) -> Value {
        json!({"request": fields, "id": "t"})
    }

    #[tokio::test]
    async fn all_operations_exceptions_and_timeouts_over_tcp() {
        let addr = start().await;
        let mut ctx = tokio_modbus::client::tcp::connect(addr)
            .await
            .expect("connect");

        let r = run(
            &mut ctx,
            op(json!({"operation":"ReadHoldingRegistersRequest","device":1,"address":2,"count":3})),
        )
        .await;
        assert_eq!(r["response"]["status"], "success", "{r}");
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":3,"registers":[1002,1003,1004]})
        );
        assert_eq!(r["id"], "t");

        let r = run(
            &mut ctx,
            op(json!({"operation":"WriteSingleRegisterRequest","device":1,"address":2,"value":7})),
        )
        .await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":6,"address":2,"value":7})
        );
        let r = run(&mut ctx, op(json!({"operation":"WriteMultipleRegistersRequest","device":1,"address":3,"values":[8,9]}))).await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":16,"address":3,"count":2})
        );
        let r = run(&mut ctx, op(json!({"operation":"MaskWriteRegisterRequest","device":1,"address":2,"and_mask":0xF0,"or_mask":0x03}))).await;
        assert_eq!(r["response"]["payload"]["function_code"], 22, "{r}");
        let r = run(
            &mut ctx,
            op(json!({"operation":"ReadInputRegistersRequest","device":1,"address":2,"count":3})),
        )
        .await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":4,"registers":[3,8,9]})
        );
        let r = run(
            &mut ctx,
            op(
                json!({"operation":"ReadWriteMultipleRegistersRequest","device":1,
            "read_address":4,"read_count":2,"write_address":5,"write_registers":[55]}),
            ),
        )
        .await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":23,"registers":[9,55]})
        );

        let r = run(&mut ctx, op(json!({"operation":"WriteMultipleCoilsRequest","device":1,"address":0,"values":[1,0,1]}))).await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":15,"address":0,"count":3})
        );
        let r = run(
            &mut ctx,
            op(json!({"operation":"WriteSingleCoilRequest","device":1,"address":1,"value":1})),
        )
        .await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":5,"address":1,"value":true})
        );
        let r = run(
            &mut ctx,
            op(json!({"operation":"ReadCoilsRequest","device":1,"address":0,"count":4})),
        )
        .await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":1,"bits":[1,1,1,0]})
        );
        let r = run(
            &mut ctx,
            op(json!({"operation":"ReadDiscreteInputsRequest","device":1,"address":0,"count":3})),
        )
        .await;
        assert_eq!(
            r["response"]["payload"],
            json!({"function_code":2,"bits":[1,1,1]})
        );

        let r = run(
            &mut ctx,
            op(json!({"operation":"ReadCoilsRequest","device":1,"address":99,"count":2})),
        )
        .await;
        assert_eq!(
            r["response"],
            json!({"status":"fail","error":"Exception","error_message":"Illegal Data Address","device":1,
                   "operation":"ReadCoilsRequest","payload":{"function_code":129,"exception_code":2}})
        );

        let started = std::time::Instant::now();
        let r = run(
            &mut ctx,
            op(json!({"operation":"ReadCoilsRequest","device":9,"address":0,"count":1})),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(r["response"]["error"], "No Response");
        assert_eq!(r["response"]["error_message"], NO_RESPONSE_MESSAGE);
        assert_eq!(r["response"]["device"], 9);
    }
}
