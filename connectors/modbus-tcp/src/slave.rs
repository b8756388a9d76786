//! A Modbus TCP slave for tests and benchmarks (feature `slave`): four
//! tables in memory, every request counted. Never part of the connector.
//!
//! It speaks the real protocol through tokio-modbus's server, answers any
//! unit id, and answers "illegal data address" (exception 2) for items past
//! the end of a table, so tests can provoke a device exception.

use std::collections::BTreeMap;
use std::future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response};

/// Items in each table unless the data says otherwise.
pub const DEFAULT_TABLE_LEN: usize = 1000;

/// Initial contents: `{"holding":{"0":[1,2]},"input":{…},"coils":{"0":[true]},"discrete":{…},"len":1000}`,
/// keys being zero-based protocol addresses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    #[serde(default)]
    pub holding: BTreeMap<u16, Vec<u16>>,
    #[serde(default)]
    pub input: BTreeMap<u16, Vec<u16>>,
    #[serde(default)]
    pub coils: BTreeMap<u16, Vec<bool>>,
    #[serde(default)]
    pub discrete: BTreeMap<u16, Vec<bool>>,
    /// Items per table.
    pub len: Option<usize>,
}

#[derive(Debug)]
struct Tables {
    holding: Vec<u16>,
    input: Vec<u16>,
    coils: Vec<bool>,
    discrete: Vec<bool>,
}

fn fill<T: Copy + Default>(len: usize, init: &BTreeMap<u16, Vec<T>>) -> Vec<T> {
    let mut table = vec![T::default(); len];
    for (start, values) in init {
        for (i, v) in values.iter().enumerate() {
            if let Some(slot) = table.get_mut(usize::from(*start) + i) {
                *slot = *v;
            }
        }
    }
    table
}

/// Requests answered, by function code.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub by_function: [AtomicU64; 24],
}

impl Counters {
    /// `{"requests":N,"by_function":{"3":N,…}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let by: serde_json::Map<String, serde_json::Value> = self
            .by_function
            .iter()
            .enumerate()
            .filter_map(|(fc, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| (fc.to_string(), n.into()))
            })
            .collect();
        serde_json::json!({"requests": self.requests.load(Ordering::Relaxed), "by_function": by})
    }
}

/// The slave's state, shared by its connections.
#[derive(Debug, Clone)]
pub struct Slave {
    tables: Arc<Mutex<Tables>>,
    pub counters: Arc<Counters>,
}

impl Slave {
    pub fn new(data: &Data) -> Slave {
        let len = data.len.unwrap_or(DEFAULT_TABLE_LEN).min(65536);
        Slave {
            tables: Arc::new(Mutex::new(Tables {
                holding: fill(len, &data.holding),
                input: fill(len, &data.input),
                coils: fill(len, &data.coils),
                discrete: fill(len, &data.discrete),
            })),
            counters: Arc::default(),
        }
    }

    /// Serves connections on `listener` until the future is dropped.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        let server = Server::new(listener);
        let this = self.clone();
        let new_service = move |_addr: SocketAddr| Ok(Some(this.clone()));
        let on_connected = |stream: tokio::net::TcpStream, addr| {
            let new_service = new_service.clone();
            // Small answers, sent at once (as a real device's stack does).
            let _ = stream.set_nodelay(true);
            async move { accept_tcp_connection(stream, addr, new_service) }
        };
        server.serve(&on_connected, |_e| {}).await
    }

    fn answer(&self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match req {
            Request::ReadCoils(a, n) => Response::ReadCoils(range(&t.coils, a, n)?.to_vec()),
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(range(&t.discrete, a, n)?.to_vec())
            }
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(range(&t.holding, a, n)?.to_vec())
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(range(&t.input, a, n)?.to_vec())
            }
            Request::WriteSingleCoil(a, v) => {
                range_mut(&mut t.coils, a, 1)?[0] = v;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, v) => {
                let n = u16::try_from(v.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                range_mut(&mut t.coils, a, n)?.copy_from_slice(&v);
                Response::WriteMultipleCoils(a, n)
            }
            Request::WriteSingleRegister(a, v) => {
                range_mut(&mut t.holding, a, 1)?[0] = v;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, v) => {
                let n = u16::try_from(v.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                range_mut(&mut t.holding, a, n)?.copy_from_slice(&v);
                Response::WriteMultipleRegisters(a, n)
            }
            Request::MaskWriteRegister(a, and, or) => {
                let r = &mut range_mut(&mut t.holding, a, 1)?[0];
                *r = (*r & and) | (or & !and);
                Response::MaskWriteRegister(a, and, or)
            }
            Request::ReadWriteMultipleRegisters(ra, rn, wa, v) => {
                let n = u16::try_from(v.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
                // The write happens before the read (Modbus spec, function 23).
                range_mut(&mut t.holding, wa, n)?.copy_from_slice(&v);
                Response::ReadWriteMultipleRegisters(range(&t.holding, ra, rn)?.to_vec())
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

fn bounds<T>(table: &[T], a: u16, n: u16) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let (start, end) = (usize::from(a), usize::from(a) + usize::from(n));
    if n == 0 || end > table.len() {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(start..end)
}

fn range<T>(table: &[T], a: u16, n: u16) -> Result<&[T], ExceptionCode> {
    let r = bounds(table, a, n)?;
    Ok(&table[r])
}

fn range_mut<T>(table: &mut [T], a: u16, n: u16) -> Result<&mut [T], ExceptionCode> {
    let r = bounds(table, a, n)?;
    Ok(&mut table[r])
}

impl Service for Slave {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self
            .counters
            .by_function
            .get(usize::from(req.function_code().value()))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        future::ready(self.answer(req))
    }
}
