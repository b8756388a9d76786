//! A child's shadow requests (`FromChild::Shadow`). They go to the local
//! shadow service (`evergreen_shadow`) as the request topic
//! `$aws/things/<thing>/shadow/<op>` with the component's ARN as source, and
//! the `/accepted` or `/rejected` payload comes back as `ShadowResult`. As
//! for a Python function's shadow call through the Lambda endpoint, the
//! service also publishes its answers (`…/accepted`, `…/rejected`,
//! `…/update/documents`, `…/update/delta`) with source `GGShadowService`, so
//! the group's subscriptions hear a change whoever made it; and as there, no
//! subscription is needed to ask.
//!
//! A request costs a file read and maybe an fsync, so it never runs on the
//! actors' thread: each child gets one shadow task, started at its first
//! request, that hands the requests in arrival order to the blocking pool
//! one at a time (a child's requests are handled in the order it sent them)
//! and answers through the writer. Bad requests are answered as the service
//! answers (`code`, `message`, `timestamp`, the request's `clientToken`):
//! 400 for a thing name that cannot form the topic (empty, over 128 bytes,
//! or with `/`, `+`, `#` or NUL; those get no `…/rejected` publish, as
//! there is no topic to publish on), 429 when `SHADOW_QUEUE` requests of
//! the child are already waiting, 503 when the runtime has no shadow
//! service (its directory could not be opened at start).

use std::sync::Arc;

use evergreen_ipc::{LogLevel, ShadowOp};
use tokio::sync::mpsc;

use super::super::writer::WriterCmd;
use super::ReaderEnv;
use crate::logs::ComponentLog;

/// Shadow requests of one child that may wait for its shadow task; more are
/// answered 429 at once. The SDK waits for each answer, so only a child
/// firing requests from many tasks reaches this, and it bounds what one
/// child can queue.
const SHADOW_QUEUE: usize = 16;
/// AWS IoT's limit on thing names.
const MAX_THING_NAME: usize = 128;

/// One shadow request waiting for the child's shadow task.
pub(super) struct ShadowJob {
    request_id: u64,
    /// `$aws/things/<thing>/shadow/<op>`.
    topic: String,
    payload: Vec<u8>,
}

/// Why a thing name cannot form a shadow topic; the text is the 400's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ThingNameError {
    #[error("Invalid thing name: it is empty")]
    Empty,
    #[error("Invalid thing name: {0} bytes long, at most {MAX_THING_NAME}")]
    TooLong(usize),
    #[error("Invalid thing name: {name:?} contains {c:?}, which cannot be in a shadow topic")]
    Reserved { name: String, c: char },
}

/// The request topic for `op` on the classic shadow of `thing_name`, or why
/// the name cannot form one. Only what would change the topic's meaning
/// (another level, a wildcard) or break it (NUL, empty) is checked here;
/// the service itself rejects the other names AWS IoT refuses, with its
/// own 400.
fn shadow_topic(thing_name: &str, op: ShadowOp) -> Result<String, ThingNameError> {
    if thing_name.is_empty() {
        return Err(ThingNameError::Empty);
    }
    if thing_name.len() > MAX_THING_NAME {
        return Err(ThingNameError::TooLong(thing_name.len()));
    }
    if let Some(c) = thing_name
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#' | '\0'))
    {
        return Err(ThingNameError::Reserved {
            name: thing_name.to_owned(),
            c,
        });
    }
    Ok(format!("$aws/things/{thing_name}/shadow/{}", op.as_str()))
}

/// The service's `/rejected` document (`code`, `message`, `timestamp`, and
/// the request's `clientToken` when it has a valid one) for a request the
/// supervisor answers itself.
fn shadow_error(code: u16, message: &str, request: &[u8]) -> Vec<u8> {
    crate::services::rejection_document(code, message, request)
}

/// Queues one `FromChild::Shadow` for the child's shadow task (starting it
/// at the first request), or answers at once when it cannot be served.
pub(super) fn shadow_request(
    env: &ReaderEnv,
    jobs: &mut Option<mpsc::Sender<ShadowJob>>,
    request_id: u64,
    thing_name: &str,
    op: ShadowOp,
    payload: Vec<u8>,
) {
    let refuse = |code: u16, why: String, request: &[u8]| {
        let line = format!("shadow {op} of {thing_name:?} refused: {code} {why}");
        env.log.write(LogLevel::Warn, &line);
        env.reply(WriterCmd::Shadow {
            request_id,
            accepted: false,
            payload: shadow_error(code, &why, request),
        });
    };
    let topic = match shadow_topic(thing_name, op) {
        Ok(topic) => topic,
        Err(why) => return refuse(400, why.to_string(), &payload),
    };
    let Some(shadow) = &env.shadow else {
        return refuse(
            503,
            "the local shadow service is not running (see the runtime's log)".into(),
            &payload,
        );
    };
    let jobs = jobs.get_or_insert_with(|| {
        let (tx, rx) = mpsc::channel(SHADOW_QUEUE);
        actix_rt::spawn(shadow_task(
            rx,
            shadow.clone(),
            env.arn.clone(),
            env.log.clone(),
            env.cmds.clone(),
        ));
        tx
    });
    let job = ShadowJob {
        request_id,
        topic,
        payload,
    };
    if let Err(e) = jobs.try_send(job) {
        // Full (the task only ends once this sender is dropped).
        let job = e.into_inner();
        refuse(
            429,
            format!("too many shadow requests of this component are waiting ({SHADOW_QUEUE}); retry later"),
            &job.payload,
        );
    }
}

/// Serves one child's shadow requests in arrival order, each on the
/// blocking pool (the service reads a file and fsyncs a change), and answers
/// through the writer. Ends when the reader drops its sender or the writer
/// is gone.
async fn shadow_task(
    mut jobs: mpsc::Receiver<ShadowJob>,
    shadow: Arc<dyn crate::services::ShadowService>,
    arn: Arc<str>,
    log: ComponentLog,
    cmds: mpsc::WeakUnboundedSender<WriterCmd>,
) {
    while let Some(ShadowJob {
        request_id,
        topic,
        payload,
    }) = jobs.recv().await
    {
        let (service, source, request_topic) = (shadow.clone(), arn.clone(), topic.clone());
        let answer =
            tokio::task::spawn_blocking(move || service.request(&source, &request_topic, &payload))
                .await;
        let (accepted, payload) = match answer {
            Ok(Some(answer)) => answer,
            // Unreachable with a topic from `shadow_topic`; answered all the same.
            Ok(None) => (
                false,
                shadow_error(
                    400,
                    &format!("{topic:?} is not a shadow request topic"),
                    b"",
                ),
            ),
            Err(e) => {
                tracing::error!("{arn}: the shadow request on {topic:?} failed: {e}");
                (
                    false,
                    shadow_error(500, "Internal service failure (see the runtime's log)", b""),
                )
            }
        };
        let outcome = if accepted { "accepted" } else { "rejected" };
        log.write(
            LogLevel::Debug,
            &format!("shadow request {topic}: {outcome}"),
        );
        let Some(tx) = cmds.upgrade() else { return };
        let _ = tx.send(WriterCmd::Shadow {
            request_id,
            accepted,
            payload,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;
    use std::time::Duration;

    use crate::inflight::InFlight;
    use crate::logs::ComponentLog;
    use crate::router::Router;

    #[test]
    fn shadow_topics_are_built_from_valid_thing_names_only() {
        assert_eq!(
            shadow_topic("lamp", ShadowOp::Get).as_deref(),
            Ok("$aws/things/lamp/shadow/get")
        );
        assert_eq!(
            shadow_topic("a:b_c-1", ShadowOp::Update).as_deref(),
            Ok("$aws/things/a:b_c-1/shadow/update")
        );
        let longest = "t".repeat(MAX_THING_NAME);
        assert_eq!(
            shadow_topic(&longest, ShadowOp::Delete),
            Ok(format!("$aws/things/{longest}/shadow/delete"))
        );
        let refused = |name: &str| {
            shadow_topic(name, ShadowOp::Get)
                .expect_err(name)
                .to_string()
        };
        assert_eq!(refused(""), "Invalid thing name: it is empty");
        assert!(
            refused(&"t".repeat(MAX_THING_NAME + 1)).contains("129 bytes long, at most 128"),
            "too long"
        );
        // Each would change what the topic means: another shadow, or a filter.
        for (name, c) in [
            ("lamp/shadow/name/x", "'/'"),
            ("lamp+", "'+'"),
            ("#", "'#'"),
            ("nul\0", "'\\0'"),
        ] {
            let why = refused(name);
            assert!(
                why.starts_with("Invalid thing name") && why.contains(c),
                "{name:?}: {why}"
            );
        }
    }

    #[test]
    fn shadow_errors_are_the_services_error_document() {
        let doc: serde_json::Value = serde_json::from_slice(&shadow_error(
            400,
            "bad \"name\"",
            br#"{"clientToken":"t1","state":{}}"#,
        ))
        .expect("JSON");
        assert_eq!(doc["code"], serde_json::json!(400));
        assert_eq!(doc["message"], serde_json::json!("bad \"name\""));
        assert_eq!(doc["clientToken"], serde_json::json!("t1"), "{doc}");
        assert!(doc["timestamp"].as_u64().is_some_and(|t| t > 0), "{doc}");
        // No token to echo from a request that is not JSON.
        let doc: serde_json::Value =
            serde_json::from_slice(&shadow_error(503, "down", b"{oops")).expect("JSON");
        assert_eq!(doc["code"], serde_json::json!(503));
        assert!(doc.get("clientToken").is_none(), "{doc}");
    }

    /// A shadow service that answers each request with the next version, as the real one
    /// (`evergreen_shadow`, tested in its crate and end to end in tests/shadow_ipc.rs) numbers
    /// updates: the versions in the answers show the order the requests reached it.
    #[derive(Debug, Default)]
    struct Versions(std::sync::Mutex<u64>);

    impl crate::services::ShadowService for Versions {
        fn request(&self, _: &str, _: &str, payload: &[u8]) -> Option<(bool, Vec<u8>)> {
            let mut version = self.0.lock().expect("lock");
            *version += 1;
            let body: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let answer = serde_json::json!({ "version": *version, "state": body["state"] });
            Some((true, answer.to_string().into_bytes()))
        }
    }

    /// A reader's environment with a real router, log file and (if `shadow`)
    /// a shadow service; the writer's commands arrive on the receiver (keep
    /// the sender alive).
    fn shadow_env(
        dir: &Path,
        shadow: bool,
    ) -> (
        ReaderEnv,
        mpsc::UnboundedSender<WriterCmd>,
        mpsc::UnboundedReceiver<WriterCmd>,
    ) {
        let router = Arc::new(Router::new(crate::router::SubscriptionTable::default()));
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:f:1";
        let log =
            ComponentLog::open(dir, Path::new("f.log"), arn, LogLevel::Debug, 128).expect("log");
        let shadow = shadow
            .then(|| Arc::new(Versions::default()) as Arc<dyn crate::services::ShadowService>);
        let (tx, rx) = mpsc::unbounded_channel();
        let env = ReaderEnv {
            arn: Arc::from(arn),
            router,
            log,
            cmds: tx.downgrade(),
            max_frame: 1 << 20,
            inflight: Rc::new(RefCell::new(InFlight::new())),
            aws: None,
            secrets: Arc::new(crate::services::NoSecrets),
            shadow,
            lambda: None,
        };
        (env, tx, rx)
    }

    /// A `WriterCmd::Shadow` as (request id, accepted, parsed payload).
    fn shadow_answer(cmd: WriterCmd) -> (u64, bool, serde_json::Value) {
        match cmd {
            WriterCmd::Shadow {
                request_id,
                accepted,
                payload,
            } => (
                request_id,
                accepted,
                serde_json::from_slice(&payload).expect("JSON answer"),
            ),
            other => panic!("expected a shadow answer, got {other:?}"),
        }
    }

    #[test]
    fn a_childs_shadow_requests_are_served_in_order_and_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        actix_rt::System::new().block_on(async {
            let (env, _keep, mut rx) = shadow_env(dir.path(), true);
            let mut jobs = None;
            let total = SHADOW_QUEUE as u64 + 3;
            // Nothing here yields, so the shadow task has not run yet: the
            // first SHADOW_QUEUE requests wait, the rest are refused at once.
            for id in 1..=total {
                let body =
                    format!(r#"{{"state":{{"reported":{{"n":{id}}}}},"clientToken":"c{id}"}}"#);
                shadow_request(
                    &env,
                    &mut jobs,
                    id,
                    "lamp",
                    ShadowOp::Update,
                    body.into_bytes(),
                );
            }
            let mut answers = Vec::new();
            for _ in 0..total {
                let cmd = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("an answer in time")
                    .expect("open");
                answers.push(shadow_answer(cmd));
            }
            let (served, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.1);
            let ids =
                |v: &[(u64, bool, serde_json::Value)]| v.iter().map(|a| a.0).collect::<Vec<_>>();
            assert_eq!(
                ids(&refused),
                (SHADOW_QUEUE as u64 + 1..=total).collect::<Vec<_>>()
            );
            for (id, _, doc) in &refused {
                assert_eq!(doc["code"], serde_json::json!(429), "{doc}");
                assert_eq!(doc["clientToken"], serde_json::json!(format!("c{id}")));
            }
            // In the order sent: each update is the next version.
            assert_eq!(ids(&served), (1..=SHADOW_QUEUE as u64).collect::<Vec<_>>());
            for (id, _, doc) in &served {
                assert_eq!(doc["version"], serde_json::json!(id), "{doc}");
                assert_eq!(doc["state"]["reported"]["n"], serde_json::json!(id));
            }
        });
    }

    #[test]
    fn shadow_requests_that_cannot_be_served_are_answered_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        actix_rt::System::new().block_on(async {
            let (env, _keep, mut rx) = shadow_env(dir.path(), false);
            let mut jobs = None;
            shadow_request(
                &env,
                &mut jobs,
                7,
                "lamp",
                ShadowOp::Get,
                br#"{"clientToken":"x"}"#.to_vec(),
            );
            let (id, accepted, doc) = shadow_answer(rx.try_recv().expect("answered at once"));
            assert_eq!((id, accepted), (7, false));
            assert_eq!(doc["code"], serde_json::json!(503), "{doc}");
            assert_eq!(doc["clientToken"], serde_json::json!("x"));
            shadow_request(&env, &mut jobs, 8, "a/b", ShadowOp::Delete, Vec::new());
            let (id, _, doc) = shadow_answer(rx.try_recv().expect("answered at once"));
            assert_eq!(id, 8);
            assert_eq!(doc["code"], serde_json::json!(400), "{doc}");
            assert!(jobs.is_none(), "no shadow task was started");
            let log = std::fs::read_to_string(dir.path().join("f.log")).expect("log");
            assert!(log.contains("shadow get of \"lamp\" refused: 503"), "{log}");
            assert!(
                log.contains("shadow delete of \"a/b\" refused: 400"),
                "{log}"
            );
        });
    }
}
