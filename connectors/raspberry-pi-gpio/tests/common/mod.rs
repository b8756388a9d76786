//! Shared by the connector's integration tests: a configuration from
//! parameters, starting the GPIO thread over a chip, and bounded waits for
//! what it publishes.

#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evergreen_connector_kit::testing::config;
use evergreen_connector_raspberry_pi_gpio::chip::GpioChip;
use evergreen_connector_raspberry_pi_gpio::logic::{Gpio, Outgoing};
use evergreen_connector_raspberry_pi_gpio::settings::{parse, Settings};
use evergreen_connector_raspberry_pi_gpio::worker::{Output, Request};
use evergreen_connector_raspberry_pi_gpio::{spawn, MANIFEST};
use evergreen_ipc::LogLevel;

pub const CORE: &str = "my-core-thing";

pub fn settings(params: &[(&str, &str)]) -> Settings {
    let mut all = vec![("GpioMem-ResourceId", "gpio")];
    all.extend_from_slice(params);
    let c = config(&MANIFEST, 3, &all)
        .core(CORE)
        .grant("gpio", "/dev/gpiochip0", true)
        .build();
    parse(&c).expect("valid settings")
}

pub struct Running {
    pub requests: Sender<Request>,
    pub out: tokio::sync::mpsc::Receiver<Output>,
    pub thread: Option<JoinHandle<()>>,
    pub logs: Vec<(LogLevel, String)>,
}

pub fn start(chip: Box<dyn GpioChip>, settings: Settings) -> Running {
    let (requests, out, thread) = spawn(chip, Gpio::new(settings)).expect("lines requested");
    Running {
        requests,
        out,
        thread: Some(thread),
        logs: Vec::new(),
    }
}

impl Running {
    pub fn send(&self, topic: &str, payload: &[u8]) {
        self.requests
            .send(Request {
                topic: topic.into(),
                payload: payload.to_vec(),
            })
            .expect("worker running");
    }

    /// The next publish within `within`, keeping logs aside.
    pub fn next(&mut self, within: Duration) -> Option<Outgoing> {
        let deadline = Instant::now() + within;
        loop {
            match self.out.try_recv() {
                Ok(Output::Publish(m)) => return Some(m),
                Ok(Output::Log(l, t)) => self.logs.push((l, t)),
                Err(_) if Instant::now() >= deadline => return None,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    /// The next publish, which must come within 2 s.
    pub fn expect(&mut self) -> (String, String) {
        let m = self
            .next(Duration::from_secs(2))
            .expect("a publish within 2 s");
        (m.topic, String::from_utf8(m.payload).expect("UTF-8"))
    }

    /// Asserts nothing is published within `within`.
    pub fn quiet(&mut self, within: Duration) {
        if let Some(m) = self.next(within) {
            panic!(
                "unexpected publish on {}: {}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            );
        }
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) -> Vec<(LogLevel, String)> {
        let (tx, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.requests, tx));
        while let Ok(o) = self.out.try_recv() {
            if let Output::Log(l, t) = o {
                self.logs.push((l, t));
            }
        }
        drop(std::mem::replace(
            &mut self.out,
            tokio::sync::mpsc::channel(1).1,
        ));
        if let Some(t) = self.thread.take() {
            t.join().expect("worker did not panic");
        }
        self.logs
    }
}

pub fn state(pin: u32) -> String {
    format!("gpio/{CORE}/{pin}/state")
}

pub fn error_topic() -> String {
    format!("gpio/{CORE}/error")
}
