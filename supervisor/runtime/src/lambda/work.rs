//! A worker's side of the lambda link: taking the next piece of work
//! (`GET …/work`, a long poll) and answering it (`POST …/work`), which
//! completes the caller's result and the component's in-flight count.

use std::rc::Rc;
use std::time::{Duration, Instant};

use evergreen_ipc::LogLevel;
use serde_json::{json, Value};

use super::http::{base64_encode, Request, Response};
use super::{epoch_ms, invocation_id, note, FunctionLink, LambdaHub, Outcome, WorkItem};
use crate::router::Message;

/// How long a worker's `GET …/work` waits before an empty 204; the runtime
/// polls again. Bounded so a vanished worker's poll cannot linger.
const LONG_POLL: Duration = Duration::from_secs(20);

/// Answers `GET …/work`: the next piece of work, or 204 after a long poll.
pub(super) async fn next_work(link: &Rc<FunctionLink>, token: &str) -> Response {
    // Polling again without answering gives the invocation up.
    let ended = link.with_worker(token, |worker| {
        let id = worker.handling.take();
        if id.is_some() {
            worker.inflight.borrow_mut().finish(Instant::now());
        }
        id
    });
    let Some(ended) = ended else {
        return Response::error(403, "not a current worker of this function");
    };
    if let Some(id) = ended {
        note(
            link,
            LogLevel::Warn,
            &format!("invocation {id} was not answered"),
        );
    }
    let item = tokio::select! {
        item = take_work(link) => item,
        _ = tokio::time::sleep(LONG_POLL) => None,
    };
    let Some(item) = item else {
        return Response::new(204);
    };
    let id = item.id.clone();
    let taken = link.with_worker(token, |worker| {
        worker.inflight.borrow_mut().begin(Instant::now());
        worker.handling = Some(id);
    });
    if taken.is_none() {
        // The worker went away during its poll: the item goes back first
        // in line, for the function's next worker.
        link.direct.borrow_mut().push_front(item);
        link.direct_ready.notify_one();
        return Response::error(403, "this worker was stopped");
    }
    let deadline = epoch_ms() + link.timeout.as_millis();
    Response::new(200)
        .header("X-Amz-InvocationId", item.id)
        .header("X-Amz-Client-Context", item.client_context)
        .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
        .body(item.payload.to_vec())
}

/// The next work item: a direct invoke first, else a routed message.
async fn take_work(link: &FunctionLink) -> Option<WorkItem> {
    let mut inbox = link.inbox.lock().await;
    loop {
        if let Some(item) = link.direct.borrow_mut().pop_front() {
            return Some(item);
        }
        tokio::select! {
            biased;
            _ = link.direct_ready.notified() => continue,
            msg = inbox.recv() => return msg.map(|m| routed(&m)),
        }
    }
}

/// A subscription delivery as work: the topic travels in `custom.subject`.
fn routed(msg: &Message) -> WorkItem {
    let context = json!({ "custom": { "subject": &*msg.topic, "source": &*msg.source } });
    WorkItem {
        id: invocation_id(),
        payload: msg.payload.clone(),
        client_context: base64_encode(context.to_string().as_bytes()),
    }
}

/// Answers `POST …/work`: the worker's result for the invocation it holds.
pub(super) fn work_result(
    hub: &LambdaHub,
    link: &FunctionLink,
    token: &str,
    req: &Request,
) -> Response {
    let Some(id) = req.header("x-amz-invocationid") else {
        return Response::error(400, "X-Amz-InvocationId is required to post a result");
    };
    let held = link.with_worker(token, |worker| {
        if worker.handling.as_deref() != Some(id) {
            return false;
        }
        worker.handling = None;
        worker.inflight.borrow_mut().finish(Instant::now());
        true
    });
    match held {
        None => return Response::error(403, "not a current worker of this function"),
        Some(false) => {
            return Response::error(
                409,
                &format!("invocation {id} is not the one this worker is handling"),
            )
        }
        Some(true) => {}
    }
    let function_error = req.header("x-amz-function-error").unwrap_or("").to_string();
    if !function_error.is_empty() {
        let message = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&req.body).into_owned());
        note(
            link,
            LogLevel::Error,
            &format!("invocation {id}: {function_error} error: {message}"),
        );
    }
    hub.complete(
        id,
        Outcome {
            function_error,
            payload: req.body.clone(),
        },
    );
    Response::new(202)
}
