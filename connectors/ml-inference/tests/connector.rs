//! The whole connector over in-memory pipes, with this test as the
//! supervisor: the handshake, `Serve` of `GG-ML-INF-image-classification-<name>`
//! once the model is loaded, invokes as V1's ML SDK makes them (client
//! context and image) answered with `{"Body", "ContentType"}` or a
//! `Handled` error, the hand-off of a classified image to ML Feedback, and
//! the stop.

#![allow(clippy::unwrap_used)] // a failed unwrap is the test failing

mod common;

use std::time::Duration;

use evergreen_connector_kit::testing;
use evergreen_connector_ml_inference::settings::{from_config, Algo};
use evergreen_connector_ml_inference::{serve, IMAGE_CLASSIFICATION_X86_64};
use evergreen_ipc::link::{expect_child_hello, SupervisorLink};
use evergreen_ipc::sdk::Component;
use evergreen_ipc::{FrameReader, FromChild, Invocation, InvokeOutcome, DEFAULT_MAX_FRAME};
use tokio::io::DuplexStream;

const WITHIN: Duration = Duration::from_secs(60);

struct Peer {
    link: SupervisorLink<DuplexStream>,
    reader: FrameReader<DuplexStream>,
    frames: Vec<FromChild>,
}

impl Peer {
    /// Reads frames until one satisfies `last`; panics after `WITHIN`.
    async fn until(&mut self, last: impl Fn(&FromChild) -> bool) -> FromChild {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.reader.read_frame::<FromChild>())
                .await
                .unwrap_or_else(|_| panic!("no such frame in time; got {:#?}", self.frames))
                .expect("a frame")
                .unwrap_or_else(|| panic!("the link closed; got {:#?}", self.frames));
            self.frames.push(frame.clone());
            if last(&frame) {
                return frame;
            }
        }
    }

    async fn invoke(&mut self, id: &str, context: &str, payload: Vec<u8>) -> InvokeOutcome {
        self.link
            .invoke(Invocation {
                invocation_id: id.into(),
                function_name: "GG-ML-INF-image-classification-cls".into(),
                caller: "arn:aws:lambda:us-east-1:123456789012:function:camera:1".into(),
                client_context: context.as_bytes().to_vec(),
                payload,
            })
            .await
            .unwrap();
        let id = id.to_string();
        match self
            .until(|f| matches!(f, FromChild::InvokeResult { invocation_id, .. } if *invocation_id == id))
            .await
        {
            FromChild::InvokeResult { outcome, .. } => outcome,
            _ => unreachable!("until returns the frame it matched"),
        }
    }
}

#[tokio::test]
async fn v1_ml_sdk_invokes_are_served_and_fed_back() {
    let Some(dir) = common::fixtures() else {
        return;
    };
    let model_dir = dir.join("classifier");
    let config = testing::config(
        &IMAGE_CLASSIFICATION_X86_64,
        2,
        &[
            ("MLModelDestinationPath", "/not/used"),
            ("MLModelResourceId", "model"),
            ("LocalInferenceServiceName", "cls"),
            ("LocalInferenceServiceTimeoutSeconds", "30"),
            ("LocalInferenceServiceMemoryLimitKB", "100000"),
            ("MLFeedbackConnectorConfigId", "fb"),
        ],
    )
    .grant("model", model_dir.to_str().unwrap(), false)
    .build();
    let (sup_w, child_r) = tokio::io::duplex(1 << 20);
    let (child_w, sup_r) = tokio::io::duplex(1 << 20);
    let mut link = SupervisorLink::new(sup_w, DEFAULT_MAX_FRAME);
    link.start(&config).await.unwrap();
    let mut component = Component::connect_with(child_r, child_w, DEFAULT_MAX_FRAME)
        .await
        .unwrap();
    let mut reader = FrameReader::new(sup_r, DEFAULT_MAX_FRAME);
    expect_child_hello(&mut reader).await.unwrap();
    let mut peer = Peer {
        link,
        reader,
        frames: Vec::new(),
    };
    let connector = tokio::spawn(async move {
        let handle = component.handle();
        component.ready().await?;
        let (parsed, _notes) = from_config(component.config(), Algo::ImageClassification);
        serve(&mut component, &handle, parsed).await
    });
    peer.until(|f| matches!(f, FromChild::Ready)).await;
    let served = peer.until(|f| matches!(f, FromChild::Serve { .. })).await;
    assert!(
        matches!(&served, FromChild::Serve { function_name, timeout_ms }
            if function_name == "GG-ML-INF-image-classification-cls" && *timeout_ms == 32_000),
        "{served:?}"
    );

    let photo = std::fs::read(dir.join("photo.jpg")).unwrap();
    let direct =
        evergreen_connector_ml_inference::Model::load(&model_dir, Algo::ImageClassification)
            .unwrap()
            .handle("image/jpeg", "", &photo)
            .unwrap();
    let outcome = peer
        .invoke(
            "inv-1",
            r#"{"custom": {"Content-Type": "image/jpeg", "Accept": "application/json"}}"#,
            photo.clone(),
        )
        .await;
    assert_eq!(outcome.function_error, "");
    let resp = testing::json(&outcome.payload);
    assert_eq!(resp["ContentType"], "application/json");
    assert_eq!(resp["Body"].as_str(), Some(direct.as_str()));

    // The classified image goes to ML Feedback, after the answer.
    let fed = peer.until(|f| matches!(f, FromChild::Invoke { .. })).await;
    let FromChild::Invoke {
        request_id,
        function_arn,
        client_context,
        payload,
        ..
    } = fed
    else {
        unreachable!("until returns the frame it matched")
    };
    assert_eq!(
        function_arn,
        "arn:aws:lambda:us-east-1:aws:function:MLFeedback"
    );
    assert_eq!(payload, photo);
    let context = testing::json(&client_context);
    assert_eq!(context["custom"]["ConfigId"], "fb");
    let prediction: Vec<f32> =
        serde_json::from_value(context["custom"]["ModelPrediction"].clone()).unwrap();
    let answered: Vec<f32> = serde_json::from_str(&direct).unwrap();
    assert_eq!(prediction, answered);
    peer.link
        .invoke_result(request_id, Ok(InvokeOutcome::ok(Vec::new())))
        .await
        .unwrap();

    // A service error is Handled, with the message as payload.
    let outcome = peer
        .invoke(
            "inv-2",
            r#"{"custom": {"Content-Type": "image/png"}}"#,
            b"nope".to_vec(),
        )
        .await;
    assert_eq!(outcome.function_error, "Handled");
    assert!(
        String::from_utf8_lossy(&outcome.payload).starts_with("cannot decode the body as PNG"),
        "{outcome:?}"
    );

    peer.link.shutdown(1000).await.unwrap();
    tokio::time::timeout(WITHIN, connector)
        .await
        .expect("the connector stops")
        .unwrap()
        .unwrap();
}
