//! The whole connector over in-memory pipes, with this test as the
//! supervisor: the handshake, `Serve` of `MLFeedback`, invocations as the ML
//! SDK's feedback client makes them (answered on admission: success, or a
//! `Handled` error), the AWS credentials asked over the link, the upload to
//! moto's S3, the statuses, prediction and metrics published, and a stop
//! that lets the queue drain.

mod common;

use std::time::Duration;

use common::*;
use evergreen_aws::AwsClient;
use evergreen_connector_kit::testing;
use evergreen_connector_ml_feedback::settings::Settings;
use evergreen_connector_ml_feedback::uploader::Retry;
use evergreen_connector_ml_feedback::{serve, MANIFEST};
use evergreen_ipc::link::{expect_child_hello, SupervisorLink};
use evergreen_ipc::sdk::Component;
use evergreen_ipc::{
    AwsCredentials, FrameReader, FromChild, Invocation, InvokeOutcome, DEFAULT_MAX_FRAME,
};
use serde_json::{json, Value};
use tokio::io::DuplexStream;

const WITHIN: Duration = Duration::from_secs(30);

/// The supervisor's end of the link.
struct Peer {
    link: SupervisorLink<DuplexStream>,
    reader: FrameReader<DuplexStream>,
    /// Every frame read, in order (credentials requests answered as read).
    frames: Vec<FromChild>,
}

impl Peer {
    /// Reads frames until one satisfies `last`, answering credentials
    /// requests with moto's test keys; panics after `WITHIN`.
    async fn until(&mut self, last: impl Fn(&FromChild) -> bool) -> FromChild {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.reader.read_frame::<FromChild>())
                .await
                .unwrap_or_else(|_| panic!("no such frame in time; got {:#?}", self.frames))
                .expect("a frame")
                .unwrap_or_else(|| panic!("the link closed; got {:#?}", self.frames));
            if let FromChild::GetCredentials { request_id } = &frame {
                self.link
                    .credentials(
                        *request_id,
                        Ok(AwsCredentials {
                            access_key_id: "testing".into(),
                            secret_access_key: "testing".into(),
                            session_token: Some("token".into()),
                            expiration_ms: None,
                        }),
                    )
                    .await
                    .expect("answer credentials");
            }
            self.frames.push(frame.clone());
            if last(&frame) {
                return frame;
            }
        }
    }

    async fn invoke(&mut self, id: &str, context: Vec<u8>, payload: &[u8]) -> InvokeOutcome {
        self.link
            .invoke(Invocation {
                invocation_id: id.into(),
                function_name: "MLFeedback".into(),
                caller: "arn:aws:lambda:us-east-1:123456789012:function:inference:1".into(),
                client_context: context,
                payload: payload.to_vec(),
            })
            .await
            .expect("invoke");
        let id = id.to_string();
        match self
            .until(|f| matches!(f, FromChild::InvokeResult { invocation_id, .. } if *invocation_id == id))
            .await
        {
            FromChild::InvokeResult { outcome, .. } => outcome,
            _ => unreachable!("until returns the frame it matched"),
        }
    }

    /// The payloads published on `topic` so far.
    fn published(&self, topic: &str) -> Vec<Value> {
        self.frames
            .iter()
            .filter_map(|f| match f {
                FromChild::Publish { topic: t, payload } if t == topic => {
                    Some(testing::json(payload))
                }
                _ => None,
            })
            .collect()
    }

    fn status_of(&self, id: &str) -> Option<Value> {
        self.published("feedback/message/status")
            .into_iter()
            .find(|s| s["id"] == id)
    }
}

fn is_status_of(f: &FromChild, id: &str) -> bool {
    matches!(f, FromChild::Publish { topic, payload } if topic == "feedback/message/status"
        && testing::json(payload)["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_are_answered_uploaded_and_reported() {
    let Some(moto) = Moto::start() else { return };
    create_bucket(&moto.client(), "feedback-bkt").await;
    let map = json!({
        "all": {"s3-bucket-name": "feedback-bkt", "content-type": "image/jpeg", "file-ext": "jpg",
                "s3-prefix": "cam"},
        "lc": {"s3-bucket-name": "feedback-bkt", "content-type": "image/jpeg",
               "sampling-strategy": {"strategy-name": "LEAST_CONFIDENCE", "threshold": 0.5}}
    })
    .to_string();
    let config = testing::config(
        &MANIFEST,
        1,
        &[
            ("FeedbackConfigurationMap", map.as_str()),
            ("RequestLimit", "5"),
        ],
    )
    .endpoints(&[("s3", &moto.url())])
    .build();

    let (sup_w, child_r) = tokio::io::duplex(1 << 20);
    let (child_w, sup_r) = tokio::io::duplex(1 << 20);
    let mut link = SupervisorLink::new(sup_w, DEFAULT_MAX_FRAME);
    link.start(&config).await.expect("start");
    let mut component = Component::connect_with(child_r, child_w, DEFAULT_MAX_FRAME)
        .await
        .expect("connect");
    let mut reader = FrameReader::new(sup_r, DEFAULT_MAX_FRAME);
    expect_child_hello(&mut reader).await.expect("hello");
    let mut peer = Peer {
        link,
        reader,
        frames: Vec::new(),
    };
    let connector = tokio::spawn(async move {
        let handle = component.handle();
        component.ready().await?;
        let (settings, _notes) = Settings::from_config(component.config());
        // What `run` does, with the credentials asked over this link.
        let aws = AwsClient::new(component.config(), handle.clone());
        let retry = Retry {
            tries: 2,
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
        };
        serve(&mut component, &handle, settings.into(), aws, retry).await
    });

    peer.until(|f| matches!(f, FromChild::Ready)).await;
    let serve_frame = peer.until(|f| matches!(f, FromChild::Serve { .. })).await;
    assert!(
        matches!(&serve_frame, FromChild::Serve { function_name, timeout_ms }
            if function_name == "MLFeedback" && *timeout_ms == 10_000),
        "{serve_frame:?}"
    );

    // Kept: answered with success, then uploaded and reported.
    let image = b"\xff\xd8\xff\xe0 not really a jpeg".to_vec();
    let outcome = peer
        .invoke(
            "inv-1",
            context(
                "all",
                json!([0.25, 0.6, 0.15]),
                json!({"some-key": "some value"}),
            ),
            &image,
        )
        .await;
    assert_eq!(outcome, InvokeOutcome::ok(Vec::new()));
    peer.until(|f| is_status_of(f, "inv-1")).await;
    let status = peer.status_of("inv-1").expect("status");
    assert_eq!(status["response"]["status"], "success", "{status}");
    let key = status["response"]["s3_response"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    assert!(key.starts_with("cam/") && key.ends_with(".jpg"), "{key}");
    peer.until(|f| {
        matches!(f, FromChild::Publish { topic, payload } if topic == "cloudwatch/metric/put"
            && testing::json(payload)["request"]["metricData"]["metricName"] == "SampleAndPredictionPublished")
    })
    .await;
    let prediction = &peer.published("feedback/message/prediction")[0];
    assert_eq!(
        prediction["source-ref"],
        format!("s3://feedback-bkt/{key}").as_str()
    );
    assert_eq!(prediction["config-id"], "all");
    assert_eq!(prediction["metadata"]["some-key"], "some value");
    let object = get_object(&moto.client(), "feedback-bkt", &key)
        .await
        .expect("object");
    assert_eq!(object.body, image);
    assert_eq!(object.header("content-type"), Some("image/jpeg"));
    assert_eq!(object.header("x-amz-meta-some-key"), Some("some value"));
    assert!(
        peer.frames
            .iter()
            .any(|f| matches!(f, FromChild::GetCredentials { .. })),
        "the upload used the core's credentials, asked over the link"
    );

    // Dropped by its strategy: a success for the caller.
    let outcome = peer
        .invoke("inv-2", context("lc", json!([0.9, 0.1]), json!({})), b"x")
        .await;
    assert_eq!(outcome, InvokeOutcome::ok(Vec::new()));
    peer.until(|f| is_status_of(f, "inv-2")).await;
    assert_eq!(
        peer.status_of("inv-2").expect("status"),
        json!({"response": {"status": "sample_dropped_by_strategy"}, "id": "inv-2"})
    );

    // Refused: a Handled error the SDK raises as GreengrassFeedbackException.
    let outcome = peer
        .invoke("inv-3", context("nope", json!([0.5]), json!({})), b"x")
        .await;
    assert_eq!(outcome.function_error, "Handled");
    let error = testing::json(&outcome.payload);
    assert_eq!(error["errorType"], "ValueError");
    assert_eq!(
        error["errorMessage"],
        "Feedback configuration map does not contain config_id: nope"
    );
    peer.until(|f| is_status_of(f, "inv-3")).await;
    assert_eq!(
        peer.status_of("inv-3").expect("status")["response"]["error"],
        "ValueError"
    );
    let outcome = peer.invoke("inv-4", Vec::new(), b"x").await;
    assert_eq!(outcome.function_error, "Handled");

    // A stop with one sample queued: it is uploaded before the connector ends.
    peer.link
        .invoke(Invocation {
            invocation_id: "inv-5".into(),
            function_name: "MLFeedback".into(),
            caller: "arn:aws:lambda:us-east-1:123456789012:function:inference:1".into(),
            client_context: context("all", json!([1.0]), json!({})),
            payload: b"last".to_vec(),
        })
        .await
        .expect("invoke");
    peer.link.shutdown(10_000).await.expect("shutdown");
    peer.until(|f| matches!(f, FromChild::Log { message, .. } if message == "stopping"))
        .await;
    let status = peer
        .status_of("inv-5")
        .expect("the queued sample was reported");
    assert_eq!(status["response"]["status"], "success", "{status}");
    assert!(
        !peer.frames.iter().any(
            |f| matches!(f, FromChild::Log { message, .. } if message.contains("not uploaded"))
        ),
        "nothing was lost"
    );
    tokio::time::timeout(WITHIN, connector)
        .await
        .expect("the connector ends")
        .expect("no panic")
        .expect("no SDK error");
}
