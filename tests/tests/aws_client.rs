//! The SigV4 client (`evergreen_aws`) against a real `moto_server`: each
//! wire protocol once (query for SNS, awsJson1.1 for Secrets Manager,
//! REST-JSON for AWS IoT), the service's error codes, and a dead
//! endpoint.

use std::collections::BTreeMap;

use evergreen_aws::{xml_value, AwsClient, AwsError};
use evergreen_ipc::AwsCredentials;
use evergreen_tests::*;
use serde_json::json;

fn client(url: &str) -> AwsClient {
    let endpoints = ["sns", "secretsmanager", "iot"]
        .iter()
        .map(|k| (k.to_string(), url.to_string()))
        .collect::<BTreeMap<_, _>>();
    AwsClient::with_credentials(
        REGION,
        endpoints,
        AwsCredentials {
            access_key_id: MOTO_ACCESS_KEY.into(),
            secret_access_key: MOTO_SECRET_KEY.into(),
            session_token: Some("session".into()),
            expiration_ms: None,
        },
    )
}

#[tokio::test(flavor = "current_thread")]
async fn signed_calls_in_all_three_protocols_reach_moto() {
    let Some(moto) = Moto::start() else { return };
    let aws = client(&moto.url());

    // Query protocol (SNS).
    let created = aws
        .query(
            "sns",
            "2010-03-31",
            "CreateTopic",
            &[("Name".into(), "alerts".into())],
        )
        .await
        .expect("CreateTopic");
    let arn = xml_value(&created, "TopicArn").expect("TopicArn");
    assert_eq!(arn, format!("arn:aws:sns:{REGION}:{ACCOUNT}:alerts"));
    let listed = aws
        .query("sns", "2010-03-31", "ListTopics", &[])
        .await
        .expect("ListTopics");
    assert!(listed.contains(&arn), "{listed}");
    let published = aws
        .query(
            "sns",
            "2010-03-31",
            "Publish",
            &[
                ("TopicArn".into(), arn.clone()),
                ("Message".into(), "x & <y> é".into()),
            ],
        )
        .await
        .expect("Publish");
    assert!(xml_value(&published, "MessageId").is_some_and(|id| !id.is_empty()));

    // The service's own error code comes through (XML `<Code>`).
    let err = aws
        .query(
            "sns",
            "2010-03-31",
            "Publish",
            &[
                (
                    "TopicArn".into(),
                    format!("arn:aws:sns:{REGION}:{ACCOUNT}:nope"),
                ),
                ("Message".into(), "m".into()),
            ],
        )
        .await
        .expect_err("no such topic");
    match &err {
        AwsError::Service { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (404, "NotFound"), "{err}")
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    assert!(!err.is_retryable());

    // awsJson1.1 (Secrets Manager).
    let created = aws
        .json(
            "secretsmanager",
            "secretsmanager.CreateSecret",
            &json!({"Name": "greengrass-token", "SecretString": "s3cret"}),
        )
        .await
        .expect("CreateSecret");
    assert!(created["ARN"]
        .as_str()
        .is_some_and(|a| a.contains("greengrass-token")));
    let got = aws
        .json(
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            &json!({"SecretId": "greengrass-token"}),
        )
        .await
        .expect("GetSecretValue");
    assert_eq!(got["SecretString"], "s3cret");
    let err = aws
        .json(
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            &json!({"SecretId": "missing"}),
        )
        .await
        .expect_err("no such secret");
    assert_eq!(err.code(), "ResourceNotFoundException", "{err}");

    // REST-JSON. moto 5.2.1 has no IoT Analytics (tests/tests/iot_analytics.rs
    // checks that protocol against a signature-checking server of its own),
    // so AWS IoT's registry, also REST-JSON, stands in.
    aws.rest_json(
        "iot",
        reqwest::Method::POST,
        "/things/sensor-1",
        Some(&json!({"attributePayload": {"attributes": {"room": "lab"}}})),
    )
    .await
    .expect("CreateThing");
    let things = aws
        .rest_json("iot", reqwest::Method::GET, "/things", None)
        .await
        .expect("ListThings");
    assert_eq!(things["things"][0]["thingName"], "sensor-1", "{things}");
    assert_eq!(things["things"][0]["attributes"]["room"], "lab", "{things}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_endpoint_is_a_retryable_transport_error() {
    let port = free_port().expect("free port");
    let aws = client(&format!("http://127.0.0.1:{port}"));
    let err = aws
        .query("sns", "2010-03-31", "ListTopics", &[])
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, AwsError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}
