//! The inference thread's queue and timeout (with stand-in handlers whose
//! timing the test controls), and the whole path of a V1 ML SDK invoke
//! (client context and image in, `{"Body", "ContentType"}` out) over a real
//! model. Every wait is bounded.

#![allow(clippy::unwrap_used)] // a failed unwrap is the test failing

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evergreen_connector_ml_inference::service::{self, Handler, Request, Service, QUEUE};
use evergreen_connector_ml_inference::{Algo, InferenceError, Model};

/// Answers after `delay`, saying which body it ran.
struct Slow {
    delay: Duration,
    ran: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Handler for Slow {
    fn handle(&self, _: &str, _: &str, body: &[u8]) -> Result<String, InferenceError> {
        std::thread::sleep(self.delay);
        self.ran.lock().unwrap().push(body.to_vec());
        Ok(String::from_utf8_lossy(body).into_owned())
    }
}

/// Blocks each request until the test sends a token (or 10 s pass).
struct Gate(Mutex<mpsc::Receiver<()>>);

impl Handler for Gate {
    fn handle(&self, _: &str, _: &str, _: &[u8]) -> Result<String, InferenceError> {
        let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(10));
        Ok("[1]".into())
    }
}

fn request(body: &str) -> Request {
    Request {
        content_type: "image/png".into(),
        accept: String::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_request_past_its_time_is_a_timeout_and_is_not_run_late() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let handler = Slow {
        delay: Duration::from_secs(1),
        ran: ran.clone(),
    };
    let service = Service::spawn(handler, QUEUE, Duration::from_millis(100)).unwrap();
    runtime().block_on(async {
        let started = Instant::now();
        let first = service.submit(request("first")).unwrap();
        let second = service.submit(request("second")).unwrap();
        assert_eq!(
            first.answer().await,
            Err(InferenceError::Timeout(Duration::from_millis(100)))
        );
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "did not wait for the run"
        );
        assert!(matches!(
            second.answer().await,
            Err(InferenceError::Timeout(_))
        ));
    });
    // The first was running when its time passed and finishes; the second
    // waited past its deadline and is skipped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ran.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Past when the second would have finished had it run.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(*ran.lock().unwrap(), [b"first".to_vec()]);
}

#[test]
fn a_full_queue_is_refused_at_once() {
    let (release, gate) = mpsc::channel();
    let service = Service::spawn(Gate(Mutex::new(gate)), 2, Duration::from_secs(10)).unwrap();
    runtime().block_on(async {
        // One running (blocked in the gate) once the thread has taken it,
        // then two waiting fill the queue of two.
        let running = service.submit(request("a")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut waiting = Vec::new();
        while waiting.len() < 2 {
            assert!(Instant::now() < deadline, "the queue never filled");
            match service.submit(request("b")) {
                Ok(p) => waiting.push(p),
                Err(InferenceError::QueueFull(_)) => {
                    // The thread had not yet taken "a": the queue held it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let refused = service.submit(request("c")).unwrap_err();
        assert_eq!(refused, InferenceError::QueueFull(2));
        assert_eq!(
            refused.to_string(),
            "the service is busy: 2 requests are already waiting"
        );
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        assert_eq!(running.answer().await, Ok("[1]".into()));
        for p in waiting {
            assert_eq!(p.answer().await, Ok("[1]".into()));
        }
    });
}

#[test]
fn a_panicking_run_is_that_requests_error_and_the_service_goes_on() {
    struct PanicsOnBoom;
    impl Handler for PanicsOnBoom {
        fn handle(&self, _: &str, _: &str, body: &[u8]) -> Result<String, InferenceError> {
            assert!(
                body != b"boom",
                "the handler failed (this panic is the test)"
            );
            Ok("[1]".into())
        }
    }
    let service = Service::spawn(PanicsOnBoom, QUEUE, Duration::from_secs(5)).unwrap();
    runtime().block_on(async {
        assert!(matches!(
            service.infer(request("boom")).await,
            Err(InferenceError::Inference(_))
        ));
        assert_eq!(service.infer(request("fine")).await, Ok("[1]".into()));
    });
}

#[test]
fn a_v1_ml_sdk_invoke_end_to_end_over_a_real_model() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let model = Model::load(&dir.join("classifier"), Algo::ImageClassification).unwrap();
    let direct = model
        .handle(
            "image/jpeg",
            "",
            &std::fs::read(dir.join("photo.jpg")).unwrap(),
        )
        .unwrap();
    let service = Service::spawn(model, QUEUE, Duration::from_secs(30)).unwrap();
    runtime().block_on(async {
        let context =
            br#"{"custom": {"Content-Type": "image/jpeg", "Accept": "application/json"}}"#;
        let photo = std::fs::read(dir.join("photo.jpg")).unwrap();
        let request = Request::from_invoke(context, photo).unwrap();
        let outcome = service::outcome(service.infer(request).await);
        assert_eq!(outcome.function_error, "");
        // The ML SDK: json.loads(payload), then resp["Body"] is the result.
        let resp: serde_json::Value = serde_json::from_slice(&outcome.payload).unwrap();
        assert_eq!(resp["ContentType"], "application/json");
        assert_eq!(resp["Body"].as_str(), Some(direct.as_str()));
        // A GIF is a Handled error whose payload is the message.
        let gif =
            Request::from_invoke(br#"{"custom": {"Content-Type": "image/gif"}}"#, vec![1]).unwrap();
        let outcome = service::outcome(service.infer(gif).await);
        assert_eq!(outcome.function_error, "Handled");
        assert!(String::from_utf8(outcome.payload)
            .unwrap()
            .starts_with("unsupported ContentType \"image/gif\""));
    });
}
