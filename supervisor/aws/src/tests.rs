//! Unit tests of the SigV4 client: signing, request shapes, error mapping, TLS roots.
use super::*;
use std::sync::atomic::Ordering;

#[test]
fn the_http_client_takes_the_preconfigured_rustls_config() {
    try_http_client().expect("reqwest accepts our rustls ClientConfig");
}

/// rustls on ring does the handshake and verifies the certificate:
/// a server the system roots do not vouch for is refused.
#[tokio::test]
async fn https_to_an_untrusted_certificate_is_refused() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        // The client hangs up during the handshake.
        acceptor.accept(stream).await.is_err()
    });
    let aws = AwsClient::with_credentials(
        "us-east-1",
        BTreeMap::from([("sns".to_string(), format!("https://127.0.0.1:{port}"))]),
        AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s".into(),
            session_token: None,
            expiration_ms: None,
        },
    );
    let err = aws
        .query("sns", "2010-03-31", "ListTopics", &[])
        .await
        .expect_err("untrusted certificate");
    assert!(
        matches!(&err, AwsError::Transport(m) if m.to_lowercase().contains("certificate")),
        "{err:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server done")
            .expect("server task"),
        "the handshake was aborted by the client"
    );
}

#[test]
fn json_error_types_are_normalized() {
    let e = classify(
        400,
        None,
        br#"{"__type":"com.amazonaws.firehose#ResourceNotFoundException","message":"Firehose s1 not found"}"#,
    );
    assert_eq!(
        e,
        AwsError::Service {
            status: 400,
            code: "ResourceNotFoundException".into(),
            message: "Firehose s1 not found".into()
        }
    );
    assert!(!e.is_retryable());
    let e = classify(
        404,
        Some("ResourceNotFoundException:http://internal.amazon.com/coral/com.amazon.iotanalytics/"),
        br#"{"message":"A resource with the specified name could not be found."}"#,
    );
    assert_eq!(e.code(), "ResourceNotFoundException");
    assert_eq!(
        e.message(),
        "A resource with the specified name could not be found."
    );
    let e = classify(
        400,
        None,
        br#"{"code":"ThrottlingException","Message":"slow"}"#,
    );
    assert_eq!(e.code(), "ThrottlingException");
    assert!(e.is_retryable(), "throttling is retried even on a 400");
}

#[test]
fn xml_errors_give_their_code() {
    let body = br#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist &amp; never did</Message></Error>
  <RequestId>9dd01905-5012-5f99-8663-4b3ecd0dfaef</RequestId></ErrorResponse>"#;
    let e = classify(404, None, body);
    assert_eq!(e.code(), "NotFound");
    assert_eq!(e.message(), "Topic does not exist & never did");
    assert!(!e.is_retryable());
    let e = classify(400, None, b"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>");
    assert!(e.is_retryable());
}

#[test]
fn bodyless_errors_use_the_status() {
    let e = classify(503, None, b"");
    assert_eq!(e.code(), "ServiceUnavailable");
    assert!(e.is_retryable());
    let e = classify(429, None, b"slow down");
    assert_eq!(e.code(), "TooManyRequests");
    assert_eq!(e.message(), "slow down");
    assert!(e.is_retryable());
    let e = classify(500, None, b"<html>oops</html>");
    assert_eq!(e.code(), "InternalServerError");
    assert!(e.is_retryable());
    let e = classify(403, None, b"");
    assert_eq!(e.code(), "Forbidden");
    assert!(!e.is_retryable());
    let long = "x".repeat(5000);
    let e = classify(400, None, long.as_bytes());
    assert!(e.message().len() <= MESSAGE_MAX + '…'.len_utf8());
}

#[test]
fn retryability_by_kind() {
    assert!(AwsError::Transport("refused".into()).is_retryable());
    assert!(AwsError::Credentials("none".into()).is_retryable());
    assert!(!AwsError::Decode("bad".into()).is_retryable());
    let e = classify(
        403,
        None,
        br#"{"__type":"ExpiredTokenException","message":"expired"}"#,
    );
    assert!(e.is_retryable() && e.stale_credentials());
    let e = classify(400, None, br#"{"__type":"InvalidArgumentException"}"#);
    assert!(!e.is_retryable());
    assert_eq!(e.message(), e.to_string(), "no message: the whole error");
}

#[test]
fn xml_value_reads_the_first_element() {
    let xml = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult><MessageId>abc-123</MessageId></PublishResult>
  <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></PublishResponse>"#;
    assert_eq!(xml_value(xml, "MessageId").as_deref(), Some("abc-123"));
    assert_eq!(xml_value(xml, "RequestId").as_deref(), Some("r1"));
    assert_eq!(xml_value(xml, "Missing"), None);
    assert_eq!(
        xml_value("<a><CodeName>x</CodeName><Code>y</Code></a>", "Code").as_deref(),
        Some("y"),
        "a longer tag with the same prefix is not the tag"
    );
    assert_eq!(
        xml_value(
            r#"<T a="1">&lt;&#65;&#x42;&quot;&apos;&gt; &bogus; &</T>"#,
            "T"
        )
        .as_deref(),
        Some("<AB\"'> &bogus; &")
    );
    assert_eq!(xml_value("<T/>", "T").as_deref(), Some(""));
    assert_eq!(
        xml_value("<T><![CDATA[a<b]]></T>", "T").as_deref(),
        Some("a<b")
    );
    assert_eq!(xml_value("<T>unterminated", "T"), None);
}

#[test]
fn sitewise_has_its_data_host_and_the_core_chain_gives_region_and_overrides() {
    let settings = credentials::AwsSettings {
        endpoint_url: Some("http://127.0.0.1:7000/".into()),
        ..Default::default()
    };
    let access = credentials::AwsAccess::resolve(
        &settings,
        &credentials::AwsEnv {
            vars: BTreeMap::from([("HOME".to_string(), "/nonexistent".to_string())]),
        },
        "eu-west-1",
    )
    .expect("resolve");
    let c = AwsClient::with_access(access);
    assert_eq!(c.region(), "eu-west-1");
    for service in ["kinesis", "iotsitewise", "s3"] {
        assert_eq!(c.endpoint(service), "http://127.0.0.1:7000");
        assert_eq!(
            c.endpoint_override(service).as_deref(),
            Some("http://127.0.0.1:7000")
        );
    }
    let plain = AwsClient::with_access(credentials::AwsAccess::none("us-west-2"));
    assert_eq!(
        plain.endpoint("iotsitewise"),
        "https://data.iotsitewise.us-west-2.amazonaws.com"
    );
    assert_eq!(plain.endpoint_override("s3"), None);
    assert_eq!(plain.domain(), "amazonaws.com");
}

#[tokio::test]
async fn the_core_chain_without_credentials_is_a_retryable_refusal() {
    let c = AwsClient::with_access(credentials::AwsAccess::none("us-west-2"));
    let e = c
        .signed_request("s3", Method::GET, "http://127.0.0.1:9/b/k", &[], Vec::new())
        .await
        .expect_err("no credentials");
    assert!(matches!(e, AwsError::Credentials(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[test]
fn form_encoding_keeps_only_unreserved() {
    assert_eq!(form_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
}

#[test]
fn endpoints_default_to_the_region() {
    let creds = AwsCredentials {
        access_key_id: "AKID".into(),
        secret_access_key: "wJalrXUtnFEMI".into(),
        session_token: None,
        expiration_ms: None,
    };
    let c = AwsClient::with_credentials(
        "eu-west-1",
        BTreeMap::from([("sns".to_string(), "http://127.0.0.1:5000/".to_string())]),
        creds,
    );
    assert_eq!(c.endpoint("sns"), "http://127.0.0.1:5000");
    assert_eq!(
        c.endpoint("iotanalytics"),
        "https://iotanalytics.eu-west-1.amazonaws.com"
    );
    assert_eq!(
        c.with_region("cn-north-1").endpoint("firehose"),
        "https://firehose.cn-north-1.amazonaws.com.cn"
    );
    assert!(!format!("{c:?}").contains("wJalrXUtnFEMI"), "{c:?}");
}

#[test]
fn credentials_are_refreshed_five_minutes_early() {
    let mut c = AwsCredentials {
        access_key_id: "AKID".into(),
        secret_access_key: "s".into(),
        session_token: Some("t".into()),
        expiration_ms: Some(1_000_000),
    };
    assert!(fresh(&c, 1_000_000 - 300_001));
    assert!(!fresh(&c, 1_000_000 - 300_000));
    c.expiration_ms = None;
    assert!(fresh(&c, u64::MAX));
}

/// `AwsClient::new` over a real IPC link: the supervisor's refusal comes
/// through as retryable, an answer is cached, and one that expires
/// within 5 minutes is asked for again.
#[tokio::test]
async fn supervisor_credentials_are_cached_until_near_expiry() {
    use evergreen_ipc::codec::{FrameReader, DEFAULT_MAX_FRAME};
    use evergreen_ipc::link::{expect_child_hello, SupervisorLink};
    use evergreen_ipc::sdk::Component;
    use evergreen_ipc::{ComponentKind, FromChild, LogLevel};
    use std::sync::atomic::AtomicUsize;

    let config = ComponentConfig {
        arn: "arn:aws:greengrass:us-east-1::/connectors/SNS/versions/4".into(),
        kind: ComponentKind::Connector,
        id: "sns".into(),
        parameters: BTreeMap::new(),
        resources: BTreeMap::new(),
        secrets: vec![],
        log_level: LogLevel::Info,
        core_thing_name: "core".into(),
        region: "eu-west-1".into(),
        endpoints: BTreeMap::from([("sns".to_string(), "http://127.0.0.1:9".to_string())]),
    };
    let (sup_w, child_r) = tokio::io::duplex(1 << 16);
    let (child_w, sup_r) = tokio::io::duplex(1 << 16);
    let mut sup = SupervisorLink::new(sup_w, DEFAULT_MAX_FRAME);
    sup.start(&config).await.expect("start");
    let component = Component::connect_with(child_r, child_w, DEFAULT_MAX_FRAME)
        .await
        .expect("connect");
    let mut reader = FrameReader::new(sup_r, DEFAULT_MAX_FRAME);
    expect_child_hello(&mut reader).await.expect("hello");

    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        let now = now_ms();
        let creds = |key: &str, expires_in_ms: u64| AwsCredentials {
            access_key_id: key.into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
            session_token: Some("token".into()),
            expiration_ms: Some(now + expires_in_ms),
        };
        let answers = [
            Err("the core has no AWS credentials".to_string()),
            Ok(creds("SOON", 60_000)),
            Ok(creds("LATER", 3_600_000)),
        ];
        let mut answers = answers.into_iter();
        while let Ok(Some(frame)) = reader.read_frame::<FromChild>().await {
            if let FromChild::GetCredentials { request_id } = frame {
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answers.next().unwrap_or(Err("no more".into()));
                if sup.credentials(request_id, answer).await.is_err() || sup.flush().await.is_err()
                {
                    return;
                }
            }
        }
    });

    let aws = AwsClient::new(component.config(), component.handle());
    assert_eq!(aws.endpoint("sns"), "http://127.0.0.1:9");
    let err = aws.credentials().await.expect_err("refused");
    assert_eq!(
        err,
        AwsError::Credentials("the core has no AWS credentials".into())
    );
    assert!(err.is_retryable());
    let soon = aws.credentials().await.expect("first credentials");
    assert_eq!(soon.access_key_id, "SOON");
    let later = aws
        .credentials()
        .await
        .expect("asked again: SOON expires within 5 minutes");
    assert_eq!(later.access_key_id, "LATER");
    for _ in 0..3 {
        assert_eq!(
            aws.clone()
                .credentials()
                .await
                .expect("cached")
                .access_key_id,
            "LATER"
        );
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "cached answers are not asked for again"
    );
    aws.forget_credentials().await;
    assert!(matches!(aws.credentials().await, Err(AwsError::Credentials(m)) if m == "no more"));
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_max() {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
    let bases = [100u64, 200, 400, 800, 1000, 1000];
    for base in bases {
        let d = b.next_delay().as_millis() as u64;
        assert!(d >= base / 2 && d <= base, "{d} for base {base}");
    }
    b.reset();
    assert!(b.next_delay() <= Duration::from_millis(100));
}

#[test]
fn keys_are_encoded_and_urls_styled_by_endpoint() {
    assert_eq!(encode_s3_key("a b/ü+c.txt"), "a%20b/%C3%BC%2Bc.txt");
    let creds = evergreen_ipc::AwsCredentials {
        access_key_id: "k".into(),
        secret_access_key: "s".into(),
        session_token: None,
        expiration_ms: None,
    };
    let real = AwsClient::with_credentials("eu-west-1", Default::default(), creds.clone());
    assert_eq!(
        real.s3_object_url("bucket", "a/b"),
        "https://bucket.s3.eu-west-1.amazonaws.com/a/b"
    );
    assert_eq!(
        real.s3_object_url("my.bucket", "k"),
        "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
    );
    let local = AwsClient::with_credentials(
        "eu-west-1",
        [("s3".to_string(), "http://127.0.0.1:5000/".to_string())].into(),
        creds,
    );
    assert_eq!(local.s3_object_url("b", "k"), "http://127.0.0.1:5000/b/k");
}
