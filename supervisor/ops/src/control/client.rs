//! The CLI's side of the control socket: a blocking client (the CLI has no
//! async runtime and needs none for one request) that sends one request
//! and reads one bounded answer, telling "nobody listening" apart from
//! "not allowed" so the CLI can say which.

use std::io::{self, BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::protocol::{Reply, Request};
use super::MAX_RESPONSE;

/// Why a request over the control socket failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no Evergreen runtime is listening on {}", path.display())]
    NotListening { path: PathBuf },
    #[error("cannot connect to {}: {source} (the socket is for root, the runtime's user and its group)", path.display())]
    PermissionDenied { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the runtime answered: {0}")]
    Refused(String),
    #[error("the runtime's answer is not understood: {0}")]
    BadAnswer(String),
}

/// A connection to a runtime's control socket (blocking: the CLI has no
/// async runtime and needs none for one request).
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    stream: io::BufReader<std::os::unix::net::UnixStream>,
}

impl Client {
    /// Connects; every later read and write waits at most `timeout`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let stream =
            std::os::unix::net::UnixStream::connect(path).map_err(|source| {
                match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        ClientError::NotListening {
                            path: path.to_path_buf(),
                        }
                    }
                    io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                        path: path.to_path_buf(),
                        source,
                    },
                    _ => ClientError::Io {
                        path: path.to_path_buf(),
                        source,
                    },
                }
            })?;
        let io_err = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        Ok(Client {
            path: path.to_path_buf(),
            stream: io::BufReader::new(stream),
        })
    }

    /// Sends `request` and returns the successful response object as
    /// received (`ok`, `op` and the reply's fields), for `--json` output.
    pub fn call_raw(&mut self, request: &Request) -> Result<Map<String, Value>, ClientError> {
        let io_err = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(request)
            .map_err(|e| ClientError::BadAnswer(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        if let Err(e) = self.stream.get_mut().write_all(line.as_bytes()) {
            // A server that refuses a connection answers and closes at once,
            // possibly before our request is written: its answer is still
            // there to read, and says more than "broken pipe".
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(io_err(e));
            }
        }
        let mut answer = String::new();
        let n = io::Read::take(&mut self.stream, MAX_RESPONSE)
            .read_line(&mut answer)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(ClientError::BadAnswer(
                "the runtime closed the connection without answering".into(),
            ));
        }
        if !answer.ends_with('\n') {
            return Err(ClientError::BadAnswer(
                "the answer is incomplete or too long".into(),
            ));
        }
        let value: Value = serde_json::from_str(&answer)
            .map_err(|e| ClientError::BadAnswer(format!("not JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ClientError::BadAnswer("not a JSON object".into()));
        };
        match object.get("ok") {
            Some(Value::Bool(true)) => Ok(object),
            Some(Value::Bool(false)) => Err(ClientError::Refused(
                object
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason given)")
                    .to_string(),
            )),
            _ => Err(ClientError::BadAnswer("no \"ok\" field".into())),
        }
    }

    /// Sends `request` and decodes the reply.
    pub fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let object = self.call_raw(request)?;
        serde_json::from_value(Value::Object(object))
            .map_err(|e| ClientError::BadAnswer(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::CLIENT_TIMEOUT;

    #[test]
    fn client_reports_a_missing_runtime() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("none.sock");
        let err = Client::connect(&path, CLIENT_TIMEOUT).expect_err("nobody there");
        assert_eq!(
            err.to_string(),
            format!("no Evergreen runtime is listening on {}", path.display())
        );
        // A stale socket file: refused, same message.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let err = Client::connect(&path, CLIENT_TIMEOUT).expect_err("nobody there");
        assert!(matches!(err, ClientError::NotListening { .. }), "{err:?}");
    }
}
