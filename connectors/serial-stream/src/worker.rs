//! The one task that owns the serial port. Requests reach it through a
//! queue in arrival order (bad ones too, so every status leaves in arrival
//! order), polling reads are slotted in between them, and it alone
//! publishes statuses and data. It also keeps the port open: a port error
//! drops the port, and it is reopened with a doubling backoff (1 s to 30 s)
//! by a timer, or at once when a request needs it.

use std::time::Duration;

use evergreen_connector_kit::Backoff;
use evergreen_ipc::sdk::{Handle, SdkError};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_serial::SerialStream;

use crate::port::{self, ReadEnd, WriteFailure};
use crate::request::{Encoding, Request};
use crate::response;
use crate::settings::Settings;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One thing for the port task to do, with where its answers go.
#[derive(Debug)]
pub struct Job {
    pub work: Work,
    /// `serial/<thing>/status/<port>` from the request's topic.
    pub status_topic: String,
    /// `serial/<thing>/read_response/<port>`.
    pub read_response_topic: String,
}

#[derive(Debug)]
pub enum Work {
    Request(Request),
    /// Answer with a fail status and this message.
    Reject {
        id: Option<Value>,
        message: String,
    },
}

/// The port task's state.
#[derive(Debug)]
pub struct Worker {
    settings: Settings,
    handle: Handle,
    port: Option<SerialStream>,
    /// Why the port is not open, for fail statuses.
    last_error: String,
    backoff: Backoff,
    next_attempt: Instant,
}

impl Worker {
    pub fn new(settings: Settings, handle: Handle) -> Worker {
        Worker {
            settings,
            handle,
            port: None,
            last_error: "not opened yet".to_string(),
            backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
            next_attempt: Instant::now(),
        }
    }

    /// Runs until the queue closes (shutdown) or the link to the
    /// supervisor does.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) -> Result<(), SdkError> {
        self.ensure_open(true);
        let polling = self.settings.polling;
        let mut ticker =
            tokio::time::interval(polling.map_or(Duration::from_secs(3600), |p| p.interval));
        // A poll that overran its interval (a long Timeout) is followed by
        // one poll, not a burst.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reopen_at = self.next_attempt;
            tokio::select! {
                // Requests first: a poll may wait, an answer should not.
                biased;
                job = jobs.recv() => match job {
                    None => return Ok(()),
                    Some(job) => self.serve(job).await?,
                },
                _ = ticker.tick(), if polling.is_some() => self.poll().await?,
                _ = tokio::time::sleep_until(reopen_at), if self.port.is_none() => {
                    self.ensure_open(false);
                }
            }
        }
    }

    /// Opens the port if it is closed: at once when `now` (a request is
    /// waiting), else only when the backoff has passed. True if open.
    fn ensure_open(&mut self, now: bool) -> bool {
        if self.port.is_some() {
            return true;
        }
        if !now && Instant::now() < self.next_attempt {
            return false;
        }
        match port::open(&self.settings.device, &self.settings.options) {
            Ok((stream, warning)) => {
                if let Some(warning) = warning {
                    self.handle.warn(warning);
                }
                self.handle.info(format!(
                    "serial port {} open at {} baud",
                    self.settings.device.display(),
                    self.settings.options.baud_rate
                ));
                self.port = Some(stream);
                // The next failure is news again, and is logged.
                self.last_error.clear();
                true
            }
            Err(e) => {
                let message = e.to_string();
                if message != self.last_error {
                    self.handle.error(format!(
                        "{message}; retrying every {} s at most",
                        MAX_BACKOFF.as_secs()
                    ));
                }
                self.last_error = message;
                self.fail_later();
                false
            }
        }
    }

    /// The port failed: close it, and reopen after the backoff.
    fn port_failed(&mut self, error: String) {
        self.handle.warn(format!(
            "serial port {} failed ({error}); reopening in {} s",
            self.settings.device.display(),
            self.backoff.peek().as_secs()
        ));
        self.port = None;
        self.last_error = error;
        self.fail_later();
    }

    fn fail_later(&mut self) {
        self.next_attempt = Instant::now() + self.backoff.next_delay();
    }

    async fn serve(&mut self, job: Job) -> Result<(), SdkError> {
        let (request, status) = match job.work {
            Work::Reject { id, message } => {
                self.handle.warn(format!("request refused: {message}"));
                return self
                    .publish(&job.status_topic, response::failure(&message, id.as_ref()))
                    .await;
            }
            Work::Request(request) => (request, job.status_topic),
        };
        match request {
            Request::Write { data, id } => {
                let answer = self.write(&data).await;
                let body = match &answer {
                    Ok(()) => response::success(id.as_ref()),
                    Err(message) => response::failure(message, id.as_ref()),
                };
                self.publish(&status, body).await
            }
            Request::Read {
                length,
                encoding,
                id,
            } => {
                let (data, answer) = self.read(length).await;
                if !data.is_empty() {
                    self.publish_data(&job.read_response_topic, &data, encoding, id.as_ref())
                        .await?;
                }
                let body = match &answer {
                    Ok(()) => response::success(id.as_ref()),
                    Err(message) => response::failure(message, id.as_ref()),
                };
                self.publish(&status, body).await
            }
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let device = self.settings.device.display().to_string();
        if !self.ensure_open(true) {
            return Err(format!("Could not write to port: {}", self.last_error));
        }
        let limit = port::write_timeout(
            data.len(),
            self.settings.options.baud_rate,
            self.settings.timeout,
        );
        let Some(stream) = self.port.as_mut() else {
            return Err(format!("Could not write to port: {}", self.last_error));
        };
        match port::write_within(stream, data, limit).await {
            Ok(()) => {
                self.backoff.reset();
                Ok(())
            }
            // The port is fine, the line is held (flow control): keep it.
            Err(WriteFailure::TimedOut { written }) => Err(format!(
                "Could not write to port: timed out after {:.1} s with {written} of {} bytes written to {device} \
                 (is flow control holding the line?)",
                limit.as_secs_f64(),
                data.len()
            )),
            Err(WriteFailure::Failed { written, error }) => {
                let message = format!(
                    "Could not write to port: {device}: {error} ({written} of {} bytes written)",
                    data.len()
                );
                self.port_failed(error.to_string());
                Err(message)
            }
        }
    }

    /// The bytes read (possibly some even on failure), and the outcome.
    async fn read(&mut self, length: usize) -> (Vec<u8>, Result<(), String>) {
        let device = self.settings.device.display().to_string();
        if !self.ensure_open(true) {
            return (
                Vec::new(),
                Err(format!("Could not read from port: {}", self.last_error)),
            );
        }
        let timeout = self.settings.timeout;
        let Some(stream) = self.port.as_mut() else {
            return (
                Vec::new(),
                Err(format!("Could not read from port: {}", self.last_error)),
            );
        };
        let (data, end) = port::read_up_to(stream, length, timeout).await;
        let answer = match end {
            ReadEnd::Complete => {
                self.backoff.reset();
                Ok(())
            }
            ReadEnd::TimedOut if data.is_empty() => Err(format!(
                "Read timed out: no data from {device} within {} s (readLength {length})",
                timeout.as_secs()
            )),
            ReadEnd::TimedOut => Err(format!(
                "Read timed out: {} of {length} bytes from {device} within {} s \
                 (the bytes received are on read_response)",
                data.len(),
                timeout.as_secs()
            )),
            ReadEnd::Failed(error) => {
                let message = format!(
                    "Could not read from port: {device}: {error} ({} of {length} bytes read)",
                    data.len()
                );
                self.port_failed(error.to_string());
                Err(message)
            }
        };
        (data, answer)
    }

    /// A Polling-Read: up to `PollingReadLength` bytes within `Timeout`,
    /// published without an id when any arrived. Problems are logged (there
    /// is no request to answer).
    async fn poll(&mut self) -> Result<(), SdkError> {
        let Some(polling) = self.settings.polling else {
            return Ok(());
        };
        if !self.ensure_open(false) {
            self.handle
                .debug(format!("poll skipped: port not open ({})", self.last_error));
            return Ok(());
        }
        let (data, answer) = self.read(polling.length).await;
        match answer {
            Ok(()) => {}
            // Fewer bytes than PollingReadLength (or none) is the normal
            // case for a poll, not a problem.
            Err(message) if message.starts_with("Read timed out") => {
                self.handle.debug(format!("poll: {message}"))
            }
            Err(message) => self.handle.warn(format!("poll: {message}")),
        }
        if data.is_empty() {
            return Ok(());
        }
        let topic = self.settings.read_response_topic();
        self.publish_data(&topic, &data, polling.encoding, None)
            .await
    }

    async fn publish_data(
        &self,
        topic: &str,
        data: &[u8],
        encoding: Encoding,
        id: Option<&Value>,
    ) -> Result<(), SdkError> {
        let (body, replaced) = response::read_response(data, encoding, id);
        if replaced {
            self.handle.warn(format!(
                "{} bytes read as ascii are not valid text; some were replaced by U+FFFD \
                 (use type hex for binary data)",
                data.len()
            ));
        }
        self.publish(topic, body).await
    }

    /// Publishes; only a closed link to the supervisor is fatal.
    async fn publish(&self, topic: &str, body: Vec<u8>) -> Result<(), SdkError> {
        match self.handle.publish(topic, body).await {
            Ok(()) => Ok(()),
            Err(SdkError::Closed) => Err(SdkError::Closed),
            Err(e) => {
                self.handle.error(format!("cannot publish on {topic}: {e}"));
                Ok(())
            }
        }
    }
}
