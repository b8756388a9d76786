//! Opening an MQTT 3.1.1 connection for the soak's two clients (the device to the runtime, the
//! cloud side to mosquitto): connect, send CONNECT, wait for an accepting CONNACK.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use evergreen_bench::mqtt::{self, Frames, Incoming};

use crate::{CONNECT_TIMEOUT, KEEP_ALIVE_SECS};

/// An accepted MQTT connection: the stream, and the frame reader holding whatever arrived
/// behind the CONNACK (a broker resuming a persistent session sends its queued PUBLISHes right
/// after it, often in the same read).
pub(crate) struct Connected {
    pub(crate) stream: TcpStream,
    pub(crate) frames: Frames,
}

/// Connects as `client_id` and waits for an accepting CONNACK.
pub(crate) fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> Result<Connected, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&mqtt::connect(client_id, clean, KEEP_ALIVE_SECS))
        .map_err(|e| e.to_string())?;
    let mut frames = Frames::default();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while Instant::now() < deadline {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before CONNACK".into());
        }
        frames.push(&buf[..n]);
        if let Some((first, body)) = frames.next_packet().map_err(|e| e.to_string())? {
            return match mqtt::decode(first, &body) {
                Ok(Incoming::ConnAck { code: 0, .. }) => {
                    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
                    Ok(Connected { stream, frames })
                }
                other => Err(format!("CONNACK refused: {other:?}")),
            };
        }
    }
    Err("no CONNACK".into())
}
