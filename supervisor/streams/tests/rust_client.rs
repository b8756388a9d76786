//! The Rust `StreamClient` against the real service (in process, on
//! loopback): every operation, the server's refusals as typed errors,
//! pipelined appends in order, and reconnecting after the server restarts.

use std::sync::Arc;
use std::time::Duration;

use evergreen_streams::client::{ClientError, StreamClient};
use evergreen_streams::model::*;
use evergreen_streams::server::{Authorizer, ServerLimits, Service};
use evergreen_streams::store::{Store, StoreLimits};

struct OneToken;

impl Authorizer for OneToken {
    fn authorize(&self, token: Option<&str>) -> Result<String, String> {
        match token {
            Some("good-token") => Ok("arn:test:connector".into()),
            _ => Err("the token is not one this runtime gave out".into()),
        }
    }
}

/// A service in its own runtime, so dropping it closes every connection
/// (as a stopped stream manager does).
struct Server {
    rt: Option<tokio::runtime::Runtime>,
    port: u16,
}

impl Server {
    fn start(root: &std::path::Path, port: u16) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test");
        let store = Store::open(root, StoreLimits::default()).expect("test");
        let limits = ServerLimits {
            max_request_bytes: 64 << 10,
            ..ServerLimits::default()
        };
        let service = Service::new(store, Arc::new(OneToken), limits);
        // The previous server's listener may take a moment to close.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("bind 127.0.0.1:{port}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
            }
        };
        let port = listener.local_addr().expect("test").port();
        rt.spawn(service.serve(listener));
        Server { rt: Some(rt), port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn def(name: &str) -> MessageStreamDefinition {
    MessageStreamDefinition {
        name: name.into(),
        max_size: Some(1 << 20),
        stream_segment_size: None,
        time_to_live_millis: None,
        strategy_on_full: StrategyOnFull::RejectNewData,
        persistence: Some(Persistence::File),
        flush_on_write: None,
        export_definition: None,
    }
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> ResponseStatusCode {
    match r {
        Err(ClientError::Status { code, .. }) => code,
        other => panic!("expected a status error, got {other:?}"),
    }
}

fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("test")
}

#[test]
fn every_operation_and_its_errors() {
    let root = tempfile::tempdir().expect("test");
    let server = Server::start(root.path(), 0);
    let rt = client_rt();
    rt.block_on(async {
        let bad = StreamClient::connect(server.port, Some("bad".into())).await;
        assert_eq!(code(bad), ResponseStatusCode::Unauthorized);

        let c = StreamClient::connect(server.port, Some("good-token".into()))
            .await
            .expect("test");
        assert!(c.list_streams().await.expect("test").is_empty());
        c.create_message_stream(&def("s1")).await.expect("test");
        assert_eq!(
            code(c.create_message_stream(&def("s1")).await),
            ResponseStatusCode::InvalidRequest
        );
        let mut bad_name = def("s1");
        bad_name.name = "bad/name".into();
        assert_eq!(
            code(c.create_message_stream(&bad_name).await),
            ResponseStatusCode::InvalidRequest
        );
        assert_eq!(
            c.list_streams().await.expect("test"),
            vec!["s1".to_string()]
        );
        assert_eq!(c.append_message("s1", b"zero").await.expect("test"), 0);
        assert_eq!(c.append_message("s1", b"one").await.expect("test"), 1);
        assert_eq!(
            code(c.append_message("nope", b"x").await),
            ResponseStatusCode::ResourceNotFound
        );
        assert_eq!(
            code(c.append_message("s1", &vec![0u8; 70 << 10]).await),
            ResponseStatusCode::RequestPayloadTooLarge
        );
        // The connection is still usable after the refusal.
        assert_eq!(c.append_message("s1", b"two").await.expect("test"), 2);

        let read = c
            .read_messages(
                "s1",
                Some(ReadMessagesOptions {
                    desired_start_sequence_number: Some(1),
                    min_message_count: Some(2),
                    max_message_count: Some(5),
                    read_timeout_millis: None,
                }),
            )
            .await
            .expect("test");
        let got: Vec<(i64, &[u8])> = read
            .iter()
            .map(|m| (m.sequence_number, &m.payload[..]))
            .collect();
        assert_eq!(got, vec![(1, &b"one"[..]), (2, &b"two"[..])]);
        assert_eq!(
            c.read_messages("s1", None).await.expect("test")[0].payload,
            b"zero"
        );
        assert_eq!(
            code(
                c.read_messages(
                    "s1",
                    Some(ReadMessagesOptions {
                        desired_start_sequence_number: Some(3),
                        min_message_count: Some(1),
                        max_message_count: None,
                        read_timeout_millis: Some(100),
                    })
                )
                .await
            ),
            ResponseStatusCode::NotEnoughMessages
        );
        assert_eq!(
            code(c.read_messages("nope", None).await),
            ResponseStatusCode::ResourceNotFound
        );

        let info = c.describe_message_stream("s1").await.expect("test");
        assert_eq!(info.definition.name, "s1");
        assert_eq!(info.storage_status.newest_sequence_number, 2);
        assert_eq!(
            code(c.describe_message_stream("nope").await),
            ResponseStatusCode::ResourceNotFound
        );

        let mut grown = def("s1");
        grown.max_size = Some(2 << 20);
        c.update_message_stream(&grown).await.expect("test");
        assert_eq!(
            c.describe_message_stream("s1")
                .await
                .expect("test")
                .definition
                .max_size,
            Some(2 << 20)
        );
        let mut mem = def("s1");
        mem.persistence = Some(Persistence::Memory);
        assert_eq!(
            code(c.update_message_stream(&mem).await),
            ResponseStatusCode::UpdateNotAllowed
        );

        c.delete_message_stream("s1").await.expect("test");
        assert_eq!(
            code(c.delete_message_stream("s1").await),
            ResponseStatusCode::ResourceNotFound
        );
        assert!(c.list_streams().await.expect("test").is_empty());
    });
}

#[test]
fn a_waiting_read_does_not_hold_up_appends_and_gets_them() {
    let root = tempfile::tempdir().expect("test");
    let server = Server::start(root.path(), 0);
    let rt = client_rt();
    rt.block_on(async {
        let c = Arc::new(
            StreamClient::connect(server.port, Some("good-token".into()))
                .await
                .expect("test")
                .with_request_timeout(Duration::from_secs(5)),
        );
        let mut d = def("w");
        d.persistence = Some(Persistence::Memory);
        c.create_message_stream(&d).await.expect("test");
        let reader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.read_messages(
                    "w",
                    Some(ReadMessagesOptions {
                        desired_start_sequence_number: Some(0),
                        min_message_count: Some(3),
                        max_message_count: Some(3),
                        read_timeout_millis: Some(10_000),
                    }),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..3 {
            assert_eq!(c.append_message("w", b"x").await.expect("test"), i);
        }
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("test")
            .expect("test")
            .expect("test");
        assert_eq!(read.len(), 3);
    });
}

#[test]
fn pipelined_appends_keep_their_order() {
    let root = tempfile::tempdir().expect("test");
    let server = Server::start(root.path(), 0);
    let rt = client_rt();
    rt.block_on(async {
        let c = StreamClient::connect(server.port, Some("good-token".into()))
            .await
            .expect("test");
        c.create_message_stream(&def("p")).await.expect("test");
        let messages: Vec<Vec<u8>> = (0..500).map(|i: i32| i.to_be_bytes().to_vec()).collect();
        let seqs: Vec<i64> = c
            .append_messages("p", &messages)
            .await
            .into_iter()
            .map(|r| r.expect("test"))
            .collect();
        assert_eq!(seqs, (0..500).collect::<Vec<i64>>());
        let read = c
            .read_messages(
                "p",
                Some(ReadMessagesOptions {
                    desired_start_sequence_number: Some(0),
                    min_message_count: Some(500),
                    max_message_count: Some(500),
                    read_timeout_millis: None,
                }),
            )
            .await
            .expect("test");
        for (i, m) in read.iter().enumerate() {
            assert_eq!(m.sequence_number, i as i64);
            assert_eq!(m.payload, (i as i32).to_be_bytes());
        }
        // Concurrent callers sharing one client each get distinct numbers.
        let c = Arc::new(c);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..25 {
                    v.push(c.append_message("p", b"c").await.expect("test"));
                }
                v
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let v = t.await.expect("test");
            assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
            all.extend(v);
        }
        all.sort();
        assert_eq!(all, (500..700).collect::<Vec<i64>>());
    });
}

#[test]
fn reconnects_on_the_next_call_after_the_server_restarts() {
    let root = tempfile::tempdir().expect("test");
    let server = Server::start(root.path(), 0);
    let port = server.port;
    let rt = client_rt();
    let c = rt.block_on(async {
        let c = StreamClient::connect(port, Some("good-token".into()))
            .await
            .expect("test")
            .with_request_timeout(Duration::from_secs(3));
        c.create_message_stream(&def("r")).await.expect("test");
        assert_eq!(c.append_message("r", b"before").await.expect("test"), 0);
        c
    });
    drop(server);
    rt.block_on(async {
        // Down: a call fails with a typed error, not a hang.
        let down = c.append_message("r", b"lost").await;
        assert!(
            matches!(down, Err(ClientError::Io(_) | ClientError::Closed)),
            "{down:?}"
        );
    });
    // Same port, same root: the File stream is still there.
    let _server = Server::start(root.path(), port);
    rt.block_on(async {
        assert_eq!(c.append_message("r", b"after").await.expect("test"), 1);
        let read = c
            .read_messages(
                "r",
                Some(ReadMessagesOptions {
                    desired_start_sequence_number: Some(0),
                    min_message_count: Some(2),
                    max_message_count: Some(2),
                    read_timeout_millis: None,
                }),
            )
            .await
            .expect("test");
        assert_eq!(read[1].payload, b"after");
    });
}

#[test]
fn a_request_without_an_answer_times_out() {
    // A listener that accepts and answers the handshake, then goes silent.
    let rt = client_rt();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test");
        let port = listener.local_addr().expect("test").port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.expect("test");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.expect("test");
            let f = evergreen_streams::wire::read_frame(&mut s, 1 << 16)
                .await
                .expect("test")
                .expect("test");
            let req: ConnectRequest = evergreen_streams::wire::decode(&f.payload).expect("test");
            assert_eq!(req.protocol_version.as_deref(), Some("1.1.0"));
            let mut out = vec![1u8];
            out.extend(evergreen_streams::wire::encode(
                Operation::ConnectResponse,
                &ConnectResponse {
                    request_id: req.request_id,
                    status: ResponseStatusCode::Success,
                    error_message: None,
                    protocol_version: Some("1.1.0".into()),
                    supported_protocol_versions: None,
                    server_version: None,
                    client_identifier: None,
                },
            ));
            s.write_all(&out).await.expect("test");
            let mut sink = vec![0u8; 4096];
            while s.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        let c = StreamClient::connect(port, None)
            .await
            .expect("test")
            .with_request_timeout(Duration::from_millis(300));
        let t0 = std::time::Instant::now();
        let r = c.list_streams().await;
        assert!(matches!(r, Err(ClientError::Timeout(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(3));
    });
}
