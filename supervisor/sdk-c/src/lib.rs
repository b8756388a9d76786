//! Evergreen's `libaws-greengrass-core-sdk-c.so`: the Greengrass V1 Core SDK for C
//! (`include/greengrasssdk.h`) for native functions, speaking the core's Lambda IPC endpoint
//! as the Python SDK does (`shared/reference/lambda-ipc.md`, `supervisor/runtime/src/lambda`).
//!
//! * `gg_global_init` reads what the runtime puts in a Lambda-link worker's environment:
//!   `GG_DAEMON_PORT`, `AWS_CONTAINER_AUTHORIZATION_TOKEN`, `MY_FUNCTION_ARN` and the service
//!   ARNs (`ROUTER_FUNCTION_ARN`, `SHADOW_FUNCTION_ARN`, `SECRETS_MANAGER_FUNCTION_ARN`).
//! * `gg_runtime_start` long-polls `GET …/work`, calls the handler for each item and answers
//!   with `POST …/work` (empty when the handler wrote nothing).
//! * Publish, invoke, shadow and secrets are invokes of `GGRouter`, a function,
//!   `GGShadowService` and `GGSecretManager`, with the client contexts the Python SDK sends;
//!   `gg_request_read` returns the answer. Statuses: function error `Handled` → HANDLED,
//!   `Unhandled` → UNHANDLED, HTTP 429/503 → AGAIN, any other refusal → UNKNOWN (its text
//!   readable), a shadow `{"code","message"}` or secret `{"Status","Message"}` answer → HANDLED.
//! * `gg_log` (C, `src/gg_log.c`) formats; each line goes to stderr as `[LEVEL] text`, which the
//!   runtime logs at that level in the function's log.
//!
//! No call lets a Rust panic cross into C: each entry point runs under `catch_unwind` and turns
//! one into `GGE_INTERNAL_FAILURE`.

mod http;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

// gg_error
const GGE_SUCCESS: c_int = 0;
// GGE_OUT_OF_MEMORY (1) is C's alone: gg_log's buffer; Rust allocations abort instead.
const GGE_INVALID_PARAMETER: c_int = 2;
const GGE_INVALID_STATE: c_int = 3;
const GGE_INTERNAL_FAILURE: c_int = 4;

// gg_request_status
const GG_REQUEST_SUCCESS: c_int = 0;
const GG_REQUEST_HANDLED: c_int = 1;
const GG_REQUEST_UNHANDLED: c_int = 2;
const GG_REQUEST_UNKNOWN: c_int = 3;
const GG_REQUEST_AGAIN: c_int = 4;

// gg_invoke_type
const GG_INVOKE_EVENT: c_int = 0;
const GG_INVOKE_REQUEST_RESPONSE: c_int = 1;

// gg_runtime_opt
const GG_RT_OPT_ASYNC: u32 = 0x1;

// gg_queue_full_policy_options
const GG_QUEUE_FULL_POLICY_BEST_EFFORT: c_int = 0;
const GG_QUEUE_FULL_POLICY_ALL_OR_ERROR: c_int = 1;

/// Consecutive failed polls of `…/work` after which the runtime loop gives up (the core is
/// gone; it would have stopped this process otherwise), about a minute with the back-off.
const MAX_POLL_FAILURES: u32 = 30;

const API: &str = "/2016-11-01/functions/";

/// `gg_request_result`.
#[repr(C)]
#[derive(Debug)]
pub struct GgRequestResult {
    request_status: c_int,
}

/// `gg_lambda_context`.
#[repr(C)]
#[derive(Debug)]
pub struct GgLambdaContext {
    function_arn: *const c_char,
    client_context: *const c_char,
}

/// `gg_invoke_options`.
#[repr(C)]
#[derive(Debug)]
pub struct GgInvokeOptions {
    function_arn: *const c_char,
    customer_context: *const c_char,
    qualifier: *const c_char,
    invoke_type: c_int,
    payload: *const c_void,
    payload_size: usize,
}

/// What `gg_request` points to: the last call's answer and how much of it was read.
#[derive(Debug, Default)]
pub struct Request {
    answer: Vec<u8>,
    read: usize,
}

/// What `gg_publish_options` points to.
#[derive(Debug, Default)]
pub struct PublishOptions {
    /// `queueFullPolicy` as the router reads it; `""` when not set.
    policy: &'static str,
}

/// `gg_lambda_handler`.
type Handler = extern "C" fn(*const GgLambdaContext);

/// The function's environment, read once by `gg_global_init`.
#[derive(Debug)]
struct Env {
    port: u16,
    token: String,
    my_arn: String,
    router: String,
    shadow: String,
    secrets: String,
}

static ENV: OnceLock<Env> = OnceLock::new();
static STARTED: AtomicBool = AtomicBool::new(false);

/// The invocation the handler is running.
#[derive(Debug)]
struct Invocation {
    id: String,
    event: Vec<u8>,
    read: usize,
    answered: bool,
}

static CURRENT: Mutex<Option<Invocation>> = Mutex::new(None);

fn current() -> std::sync::MutexGuard<'static, Option<Invocation>> {
    // A panic while it was held (caught at the boundary) leaves plain data: keep using it.
    CURRENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line to the function's log (stderr, read by the runtime).
fn log_line(prefix: &str, text: &str) {
    let mut err = std::io::stderr().lock();
    for line in text.split('\n') {
        let _ = err.write_all(format!("{prefix}{}\n", line.trim_end_matches('\r')).as_bytes());
    }
    let _ = err.flush();
}

/// The SDK's own complaints, at ERROR.
fn complain(text: &str) {
    log_line("[ERROR] greengrasssdk: ", text);
}

/// Runs an entry point, turning a panic into `GGE_INTERNAL_FAILURE`.
fn guard(name: &str, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(_) => {
            complain(&format!("{name}: internal error (a panic was caught)"));
            GGE_INTERNAL_FAILURE
        }
    }
}

fn env() -> Result<&'static Env, c_int> {
    ENV.get().ok_or_else(|| {
        complain("gg_global_init was not called (or failed)");
        GGE_INVALID_STATE
    })
}

/// A C string argument: `None` for NULL, an error for invalid UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, c_int> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map(Some).map_err(|_| {
        complain(&format!("{what} is not UTF-8"));
        GGE_INVALID_PARAMETER
    })
}

/// A required, non-empty C string argument.
///
/// # Safety
/// As [`text`].
unsafe fn required<'a>(p: *const c_char, what: &str) -> Result<&'a str, c_int> {
    // SAFETY: the caller's promise is passed on.
    match unsafe { text(p, what) }? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => {
            complain(&format!("{what} is required"));
            Err(GGE_INVALID_PARAMETER)
        }
    }
}

/// A `(pointer, size)` buffer argument as a slice; NULL only with size 0.
///
/// # Safety
/// `p` is NULL or valid for reads of `size` bytes for the call.
unsafe fn bytes<'a>(p: *const c_void, size: usize, what: &str) -> Result<&'a [u8], c_int> {
    if size == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        complain(&format!("{what} is NULL but its size is {size}"));
        return Err(GGE_INVALID_PARAMETER);
    }
    // SAFETY: non-NULL and the caller promises `size` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) })
}

/// Copies what is left of `source` from `*read` into `(buffer, size)`.
///
/// # Safety
/// `buffer` is valid for writes of `size` bytes and `amount` for one write, both non-NULL.
unsafe fn copy_out(
    source: &[u8],
    read: &mut usize,
    buffer: *mut c_void,
    size: usize,
    amount: *mut usize,
) {
    let rest = &source[(*read).min(source.len())..];
    let n = rest.len().min(size);
    if n > 0 {
        // SAFETY: `buffer` holds `size` >= n writable bytes (the caller's promise), and cannot
        // overlap our own heap copy of the answer.
        unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), buffer.cast::<u8>(), n) };
    }
    *read += n;
    // SAFETY: `amount` is non-NULL and writable (the caller's promise).
    unsafe { *amount = n };
}

/// An ARN as a path segment: what is not unreserved (or `:`/`$`) percent-encoded.
fn path_segment(arn: &str) -> String {
    let mut out = String::with_capacity(arn.len());
    for b in arn.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:$".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request status for an HTTP refusal.
fn refused(status: u16) -> c_int {
    match status {
        429 | 503 => GG_REQUEST_AGAIN,
        _ => GG_REQUEST_UNKNOWN,
    }
}

/// Invokes `arn` (`RequestResponse` when `wait`) and, when waiting, fetches the result.
/// Returns the request status and the answer's bytes.
fn call(
    env: &Env,
    arn: &str,
    wait: bool,
    context: &str,
    body: &[u8],
) -> Result<(c_int, Vec<u8>), c_int> {
    let path = format!("{API}{}", path_segment(arn));
    let kind = if wait { "RequestResponse" } else { "Event" };
    let unreachable = |e: std::io::Error| {
        complain(&format!(
            "cannot reach the core's Lambda endpoint on localhost:{}: {e}",
            env.port
        ));
        GGE_INTERNAL_FAILURE
    };
    let a = http::request(
        env.port,
        "POST",
        &path,
        &[
            ("Authorization", &env.token),
            ("X-Amz-Invocation-Type", kind),
            ("X-Amz-Client-Context", context),
        ],
        body,
    )
    .map_err(unreachable)?;
    if !a.ok() {
        return Ok((refused(a.status), a.body));
    }
    if !wait {
        return Ok((GG_REQUEST_SUCCESS, Vec::new()));
    }
    let Some(id) = a.header("X-Amz-InvocationId").map(str::to_string) else {
        complain("the core accepted an invoke without an X-Amz-InvocationId");
        return Err(GGE_INTERNAL_FAILURE);
    };
    let r = http::request(
        env.port,
        "GET",
        &path,
        &[("Authorization", &env.token), ("X-Amz-InvocationId", &id)],
        &[],
    )
    .map_err(unreachable)?;
    if !r.ok() {
        return Ok((refused(r.status), r.body));
    }
    let status = match r.header("X-Amz-Function-Error").unwrap_or("") {
        "" => GG_REQUEST_SUCCESS,
        "Handled" => GG_REQUEST_HANDLED,
        _ => GG_REQUEST_UNHANDLED,
    };
    Ok((status, r.body))
}

/// Whether a JSON answer is an error document with both `a` and `b` (shadow rejections,
/// secret refusals).
fn error_document(body: &[u8], a: &str, b: &str) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get(a).is_some() && v.get(b).is_some())
}

/// Stores an answer in the request and its status in the result.
///
/// # Safety
/// `req` was made by `gg_request_init` and not closed; `result` is writable; both non-NULL.
unsafe fn finish(
    req: *mut Request,
    result: *mut GgRequestResult,
    status: c_int,
    answer: Vec<u8>,
) -> c_int {
    // SAFETY: the caller's promise: a live Request of ours, used by one thread at a time.
    let req = unsafe { &mut *req };
    req.answer = answer;
    req.read = 0;
    // SAFETY: non-NULL and writable (the caller's promise).
    unsafe { (*result).request_status = status };
    GGE_SUCCESS
}

/// The checks every request-taking call starts with.
fn check_request(req: *mut Request, result: *mut GgRequestResult) -> Result<&'static Env, c_int> {
    if req.is_null() || result.is_null() {
        complain("ggreq and result are required");
        return Err(GGE_INVALID_PARAMETER);
    }
    env()
}

macro_rules! tryc {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(code) => return code,
        }
    };
}

// ------------------------------------------------------------------------------------ setup --

/// `gg_global_init`.
#[no_mangle]
pub extern "C" fn gg_global_init(opt: u32) -> c_int {
    guard("gg_global_init", || {
        if opt != 0 {
            complain("gg_global_init: opt must be 0");
            return GGE_INVALID_PARAMETER;
        }
        if ENV.get().is_some() {
            return GGE_SUCCESS;
        }
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(token), Some(my_arn)) = (
            var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            var("MY_FUNCTION_ARN"),
        ) else {
            complain("gg_global_init: AWS_CONTAINER_AUTHORIZATION_TOKEN and MY_FUNCTION_ARN are not set: not started by a Greengrass core as a Lambda function");
            return GGE_INVALID_STATE;
        };
        // Cores before GG_DAEMON_PORT served on 8000 (the contract's §1.2).
        let port = match var("GG_DAEMON_PORT").map(|p| p.parse::<u16>()) {
            None => 8000,
            Some(Ok(p)) => p,
            Some(Err(_)) => {
                complain("gg_global_init: GG_DAEMON_PORT is not a port number");
                return GGE_INVALID_STATE;
            }
        };
        let _ = ENV.set(Env {
            port,
            token,
            my_arn,
            router: var("ROUTER_FUNCTION_ARN")
                .unwrap_or_else(|| "arn:aws:lambda:::function:GGRouter".into()),
            shadow: var("SHADOW_FUNCTION_ARN")
                .unwrap_or_else(|| "arn:aws:lambda:::function:GGShadowService".into()),
            secrets: var("SECRETS_MANAGER_FUNCTION_ARN")
                .unwrap_or_else(|| "arn:aws:lambda:::function:GGSecretManager:1".into()),
        });
        GGE_SUCCESS
    })
}

/// The Rust half of `gg_log` (`src/gg_log.c`): one formatted message to the function's log.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn evergreen_gg_log_line(level: c_int, message: *const c_char) -> c_int {
    guard("gg_log", || {
        // The prefixes the runtime reads a line's level from (as from Python's logging).
        let prefix = match level {
            1 => "[DEBUG] ",
            2 => "[INFO] ",
            3 => "[WARNING] ",
            4 => "[ERROR] ",
            5 => "[CRITICAL] ",
            _ => return GGE_INVALID_PARAMETER,
        };
        if message.is_null() {
            return GGE_INVALID_PARAMETER;
        }
        // SAFETY: non-NULL and NUL-terminated (gg_log.c passes its formatted buffer).
        let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        log_line(prefix, &text);
        GGE_SUCCESS
    })
}

// --------------------------------------------------------------------------------- requests --

/// `gg_request_init`.
///
/// # Safety
/// `ggreq` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gg_request_init(ggreq: *mut *mut Request) -> c_int {
    guard("gg_request_init", || {
        if ggreq.is_null() {
            return GGE_INVALID_PARAMETER;
        }
        let req = Box::into_raw(Box::default());
        // SAFETY: non-NULL and writable (the caller's promise).
        unsafe { *ggreq = req };
        GGE_SUCCESS
    })
}

/// `gg_request_close`.
///
/// # Safety
/// `ggreq` is NULL or was made by `gg_request_init` and is not used after.
#[no_mangle]
pub unsafe extern "C" fn gg_request_close(ggreq: *mut Request) -> c_int {
    guard("gg_request_close", || {
        if ggreq.is_null() {
            return GGE_INVALID_PARAMETER;
        }
        // SAFETY: made by Box::into_raw in gg_request_init, closed once (the caller's promise).
        drop(unsafe { Box::from_raw(ggreq) });
        GGE_SUCCESS
    })
}

/// `gg_request_read`.
///
/// # Safety
/// `ggreq` is a live request; `buffer` holds `buffer_size` writable bytes; `amount_read` is
/// writable.
#[no_mangle]
pub unsafe extern "C" fn gg_request_read(
    ggreq: *mut Request,
    buffer: *mut c_void,
    buffer_size: usize,
    amount_read: *mut usize,
) -> c_int {
    guard("gg_request_read", || {
        if ggreq.is_null() || amount_read.is_null() || (buffer.is_null() && buffer_size > 0) {
            return GGE_INVALID_PARAMETER;
        }
        // SAFETY: a live Request of ours (the caller's promise).
        let req = unsafe { &mut *ggreq };
        // SAFETY: the buffer and amount_read promises are the caller's, checked non-NULL.
        unsafe { copy_out(&req.answer, &mut req.read, buffer, buffer_size, amount_read) };
        GGE_SUCCESS
    })
}

// ---------------------------------------------------------------------------------- runtime --

/// Answers the current invocation: `POST …/work`.
fn answer(env: &Env, id: &str, body: &[u8], error: bool) -> c_int {
    let path = format!("{API}{}/work", path_segment(&env.my_arn));
    let mut headers = vec![
        ("Authorization", env.token.as_str()),
        ("X-Amz-InvocationId", id),
    ];
    if error {
        headers.push(("X-Amz-Function-Error", "Handled"));
    }
    match http::request(env.port, "POST", &path, &headers, body) {
        Ok(a) if a.ok() => GGE_SUCCESS,
        Ok(a) => {
            complain(&format!(
                "the core refused the answer to invocation {id} ({}): {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
            GGE_INTERNAL_FAILURE
        }
        Err(e) => {
            complain(&format!("cannot answer invocation {id}: {e}"));
            GGE_INTERNAL_FAILURE
        }
    }
}

/// The handler loop: take work, run the handler, answer. Returns only when the core is gone.
fn serve(env: &'static Env, handler: Handler) -> c_int {
    let path = format!("{API}{}/work", path_segment(&env.my_arn));
    let Ok(arn) = CString::new(env.my_arn.as_str()) else {
        complain("MY_FUNCTION_ARN holds a NUL character");
        return GGE_INVALID_STATE;
    };
    let mut failures = 0u32;
    loop {
        let work = http::request(
            env.port,
            "GET",
            &path,
            &[("Authorization", &env.token)],
            &[],
        );
        let a = match work {
            Ok(a) if a.status == 200 => a,
            // The long poll ended with nothing to do.
            Ok(a) if a.status == 204 => {
                failures = 0;
                continue;
            }
            // The core no longer knows this worker (replaced or stopped): nothing to serve.
            Ok(a) if a.status == 403 => {
                complain(&format!(
                    "the core refused to hand work to this worker: {}",
                    String::from_utf8_lossy(&a.body)
                ));
                return GGE_INVALID_STATE;
            }
            other => {
                failures += 1;
                let why = match other {
                    Ok(a) => format!("status {}: {}", a.status, String::from_utf8_lossy(&a.body)),
                    Err(e) => e.to_string(),
                };
                complain(&format!(
                    "cannot take work ({failures}/{MAX_POLL_FAILURES}): {why}"
                ));
                if failures >= MAX_POLL_FAILURES {
                    return GGE_INTERNAL_FAILURE;
                }
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(20))));
                continue;
            }
        };
        failures = 0;
        let Some(id) = a.header("X-Amz-InvocationId").map(str::to_string) else {
            complain("the core handed work without an X-Amz-InvocationId");
            continue;
        };
        let context =
            CString::new(a.header("X-Amz-Client-Context").unwrap_or("")).unwrap_or_default();
        *current() = Some(Invocation {
            id: id.clone(),
            event: a.body,
            read: 0,
            answered: false,
        });
        let cxt = GgLambdaContext {
            function_arn: arn.as_ptr(),
            client_context: context.as_ptr(),
        };
        handler(&cxt);
        let answered = current().take().is_some_and(|i| i.answered);
        if !answered {
            // The documented default: a handler that writes nothing answers empty.
            answer(env, &id, b"", false);
        }
    }
}

extern "C" {
    /// libc's `signal` (the one libc call this library makes).
    fn signal(signum: c_int, handler: usize) -> usize;
}

/// `SIGTERM` on Linux (every architecture).
const SIGTERM: c_int = 15;
/// `SIG_DFL`.
const SIG_DFL: usize = 0;

/// `gg_runtime_start`.
#[no_mangle]
pub extern "C" fn gg_runtime_start(handler: Option<Handler>, opt: u32) -> c_int {
    guard("gg_runtime_start", || {
        let env = tryc!(env());
        let Some(handler) = handler else {
            complain("gg_runtime_start: handler is required");
            return GGE_INVALID_PARAMETER;
        };
        if opt & !GG_RT_OPT_ASYNC != 0 {
            complain("gg_runtime_start: unknown option flags");
            return GGE_INVALID_PARAMETER;
        }
        if STARTED.swap(true, Ordering::SeqCst) {
            complain("gg_runtime_start: the runtime is already started");
            return GGE_INVALID_STATE;
        }
        // The core stops a function with SIGTERM: make sure it ends the process whatever the
        // program installed before (V1's library took the SIGTERM handler over too).
        // SAFETY: setting a signal's disposition to SIG_DFL has no memory-safety conditions.
        unsafe { signal(SIGTERM, SIG_DFL) };
        if opt & GG_RT_OPT_ASYNC != 0 {
            let spawned = std::thread::Builder::new()
                .name("gg-runtime".into())
                .spawn(move || {
                    let code = catch_unwind(AssertUnwindSafe(|| serve(env, handler)));
                    if code.is_err() {
                        complain("the runtime thread stopped on an internal error");
                    }
                });
            return match spawned {
                Ok(_) => GGE_SUCCESS,
                Err(e) => {
                    complain(&format!("cannot start the runtime thread: {e}"));
                    STARTED.store(false, Ordering::SeqCst);
                    GGE_INTERNAL_FAILURE
                }
            };
        }
        serve(env, handler)
    })
}

/// `gg_lambda_handler_read`.
///
/// # Safety
/// `buffer` holds `buffer_size` writable bytes; `amount_read` is writable.
#[no_mangle]
pub unsafe extern "C" fn gg_lambda_handler_read(
    buffer: *mut c_void,
    buffer_size: usize,
    amount_read: *mut usize,
) -> c_int {
    guard("gg_lambda_handler_read", || {
        if amount_read.is_null() || (buffer.is_null() && buffer_size > 0) {
            return GGE_INVALID_PARAMETER;
        }
        let mut slot = current();
        let Some(inv) = slot.as_mut() else {
            complain("gg_lambda_handler_read: not in a handler");
            return GGE_INVALID_STATE;
        };
        // SAFETY: the buffer and amount_read promises are the caller's, checked non-NULL.
        unsafe { copy_out(&inv.event, &mut inv.read, buffer, buffer_size, amount_read) };
        GGE_SUCCESS
    })
}

/// Marks the current invocation answered; its id, or why not.
fn take_answer(what: &str) -> Result<String, c_int> {
    let mut slot = current();
    match slot.as_mut() {
        None => {
            complain(&format!("{what}: not in a handler"));
            Err(GGE_INVALID_STATE)
        }
        Some(inv) if inv.answered => {
            complain(&format!("{what}: the invocation was already answered"));
            Err(GGE_INVALID_STATE)
        }
        Some(inv) => {
            inv.answered = true;
            Ok(inv.id.clone())
        }
    }
}

/// `gg_lambda_handler_write_response`.
///
/// # Safety
/// `response` is NULL or holds `response_size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gg_lambda_handler_write_response(
    response: *const c_void,
    response_size: usize,
) -> c_int {
    guard("gg_lambda_handler_write_response", || {
        let env = tryc!(env());
        // SAFETY: the caller's promise about `response`.
        let body = tryc!(unsafe { bytes(response, response_size, "response") });
        let id = tryc!(take_answer("gg_lambda_handler_write_response"));
        answer(env, &id, body, false)
    })
}

/// `gg_lambda_handler_write_error`.
///
/// # Safety
/// `error_message` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gg_lambda_handler_write_error(error_message: *const c_char) -> c_int {
    guard("gg_lambda_handler_write_error", || {
        let env = tryc!(env());
        // SAFETY: the caller's promise about `error_message`.
        let message = tryc!(unsafe { text(error_message, "error_message") }).unwrap_or("");
        let id = tryc!(take_answer("gg_lambda_handler_write_error"));
        let body = json!({ "errorMessage": message }).to_string();
        answer(env, &id, body.as_bytes(), true)
    })
}

// ---------------------------------------------------------------------------------- secrets --

/// `gg_get_secret_value`.
///
/// # Safety
/// `ggreq` is a live request, `result` writable, the strings NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gg_get_secret_value(
    ggreq: *mut Request,
    secret_id: *const c_char,
    version_id: *const c_char,
    version_stage: *const c_char,
    result: *mut GgRequestResult,
) -> c_int {
    guard("gg_get_secret_value", || {
        let env = tryc!(check_request(ggreq, result));
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let id = tryc!(unsafe { required(secret_id, "secret_id") });
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let version = tryc!(unsafe { text(version_id, "version_id") });
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let stage = tryc!(unsafe { text(version_stage, "version_stage") });
        let mut body = json!({ "SecretId": id });
        // Passed on as asked: the core answers a VersionId with the refusal the SDKs know.
        if let Some(v) = version.filter(|v| !v.is_empty()) {
            body["VersionId"] = json!(v);
        }
        if let Some(s) = stage.filter(|s| !s.is_empty()) {
            body["VersionStage"] = json!(s);
        }
        let (mut status, answer) = tryc!(call(
            env,
            &env.secrets,
            true,
            "",
            body.to_string().as_bytes()
        ));
        if status == GG_REQUEST_SUCCESS && error_document(&answer, "Status", "Message") {
            status = GG_REQUEST_HANDLED;
        }
        // SAFETY: checked non-NULL; the caller's promise that they are live and writable.
        unsafe { finish(ggreq, result, status, answer) }
    })
}

// ----------------------------------------------------------------------------------- lambda --

/// `gg_invoke`.
///
/// # Safety
/// `ggreq` is a live request, `opts` readable with valid strings and payload, `result` writable.
#[no_mangle]
pub unsafe extern "C" fn gg_invoke(
    ggreq: *mut Request,
    opts: *const GgInvokeOptions,
    result: *mut GgRequestResult,
) -> c_int {
    guard("gg_invoke", || {
        let env = tryc!(check_request(ggreq, result));
        if opts.is_null() {
            complain("gg_invoke: opts is required");
            return GGE_INVALID_PARAMETER;
        }
        // SAFETY: non-NULL and readable (the caller's promise).
        let opts = unsafe { &*opts };
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let arn = tryc!(unsafe { required(opts.function_arn, "function_arn") });
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let context =
            tryc!(unsafe { text(opts.customer_context, "customer_context") }).unwrap_or("");
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let qualifier =
            tryc!(unsafe { text(opts.qualifier, "qualifier") }).filter(|q| !q.is_empty());
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let payload = tryc!(unsafe { bytes(opts.payload, opts.payload_size, "payload") });
        let wait = match opts.invoke_type {
            GG_INVOKE_EVENT => false,
            GG_INVOKE_REQUEST_RESPONSE => true,
            other => {
                complain(&format!("gg_invoke: {other} is not an invoke type"));
                return GGE_INVALID_PARAMETER;
            }
        };
        // arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() < 7
            || parts.len() > 8
            || parts[0] != "arn"
            || parts[2] != "lambda"
            || parts[5] != "function"
        {
            complain(&format!("gg_invoke: {arn:?} is not a function ARN"));
            return GGE_INVALID_PARAMETER;
        }
        let target = match (parts.get(7), qualifier) {
            (Some(own), Some(q)) if *own != q => {
                complain(&format!(
                    "gg_invoke: the ARN's qualifier {own:?} and qualifier {q:?} differ"
                ));
                return GGE_INVALID_PARAMETER;
            }
            (None, Some(q)) => format!("{arn}:{q}"),
            _ => arn.to_string(),
        };
        let (status, answer) = tryc!(call(env, &target, wait, context, payload));
        // SAFETY: checked non-NULL; the caller's promise that they are live and writable.
        unsafe { finish(ggreq, result, status, answer) }
    })
}

// ---------------------------------------------------------------------------------- AWS IoT --

/// `gg_publish_options_init`.
///
/// # Safety
/// `opts` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn gg_publish_options_init(opts: *mut *mut PublishOptions) -> c_int {
    guard("gg_publish_options_init", || {
        if opts.is_null() {
            return GGE_INVALID_PARAMETER;
        }
        let made = Box::into_raw(Box::default());
        // SAFETY: non-NULL and writable (the caller's promise).
        unsafe { *opts = made };
        GGE_SUCCESS
    })
}

/// `gg_publish_options_free`.
///
/// # Safety
/// `opts` is NULL or was made by `gg_publish_options_init` and is not used after.
#[no_mangle]
pub unsafe extern "C" fn gg_publish_options_free(opts: *mut PublishOptions) -> c_int {
    guard("gg_publish_options_free", || {
        if opts.is_null() {
            return GGE_INVALID_PARAMETER;
        }
        // SAFETY: made by Box::into_raw in gg_publish_options_init, freed once.
        drop(unsafe { Box::from_raw(opts) });
        GGE_SUCCESS
    })
}

/// `gg_publish_options_set_queue_full_policy`.
///
/// # Safety
/// `opts` is NULL or a live publish options.
#[no_mangle]
pub unsafe extern "C" fn gg_publish_options_set_queue_full_policy(
    opts: *mut PublishOptions,
    policy: c_int,
) -> c_int {
    guard("gg_publish_options_set_queue_full_policy", || {
        if opts.is_null() {
            return GGE_INVALID_PARAMETER;
        }
        let policy = match policy {
            GG_QUEUE_FULL_POLICY_BEST_EFFORT => "BestEffort",
            GG_QUEUE_FULL_POLICY_ALL_OR_ERROR => "AllOrError",
            other => {
                complain(&format!("{other} is not a queue full policy"));
                return GGE_INVALID_PARAMETER;
            }
        };
        // SAFETY: a live PublishOptions of ours (the caller's promise).
        unsafe { (*opts).policy = policy };
        GGE_SUCCESS
    })
}

/// `gg_publish_with_options`.
///
/// # Safety
/// `ggreq` is a live request, `topic` NUL-terminated, `payload` holds `payload_size` bytes,
/// `opts` NULL or live, `result` writable.
#[no_mangle]
pub unsafe extern "C" fn gg_publish_with_options(
    ggreq: *mut Request,
    topic: *const c_char,
    payload: *const c_void,
    payload_size: usize,
    opts: *const PublishOptions,
    result: *mut GgRequestResult,
) -> c_int {
    guard("gg_publish_with_options", || {
        let env = tryc!(check_request(ggreq, result));
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let topic = tryc!(unsafe { required(topic, "topic") });
        // SAFETY: the caller's promise about this argument (see the function's # Safety).
        let payload = tryc!(unsafe { bytes(payload, payload_size, "payload") });
        let policy = if opts.is_null() {
            ""
        } else {
            // SAFETY: non-NULL and live (the caller's promise).
            unsafe { (*opts).policy }
        };
        // What the Python SDK sends: the router reads the source, topic and policy from it.
        let context = json!({ "custom": { "source": env.my_arn, "subject": topic, "queueFullPolicy": policy } });
        let context = http::base64(context.to_string().as_bytes());
        let (status, answer) = tryc!(call(env, &env.router, false, &context, payload));
        // SAFETY: checked non-NULL; the caller's promise that they are live and writable.
        unsafe { finish(ggreq, result, status, answer) }
    })
}

/// `gg_publish`.
///
/// # Safety
/// As `gg_publish_with_options`.
#[no_mangle]
pub unsafe extern "C" fn gg_publish(
    ggreq: *mut Request,
    topic: *const c_char,
    payload: *const c_void,
    payload_size: usize,
    result: *mut GgRequestResult,
) -> c_int {
    // SAFETY: the caller's promises are passed on unchanged.
    unsafe {
        gg_publish_with_options(
            ggreq,
            topic,
            payload,
            payload_size,
            std::ptr::null(),
            result,
        )
    }
}

/// A shadow request (`op` = get, update or delete) of `thing_name`.
///
/// # Safety
/// As the public shadow calls.
unsafe fn shadow(
    op: &str,
    ggreq: *mut Request,
    thing_name: *const c_char,
    document: *const c_char,
    result: *mut GgRequestResult,
) -> c_int {
    let env = tryc!(check_request(ggreq, result));
    // SAFETY: the caller's promise about thing_name.
    let thing = tryc!(unsafe { required(thing_name, "thing_name") });
    // SAFETY: the caller's promise about this argument (see the function's # Safety).
    let body = if op == "update" {
        // SAFETY: the caller's promise about the update document.
        tryc!(unsafe { required(document, "update_payload") }).as_bytes()
    } else {
        &[]
    };
    let topic = format!("$aws/things/{thing}/shadow/{op}");
    let context = http::base64(
        json!({ "custom": { "subject": topic } })
            .to_string()
            .as_bytes(),
    );
    let (mut status, answer) = tryc!(call(env, &env.shadow, true, &context, body));
    if status == GG_REQUEST_SUCCESS && error_document(&answer, "code", "message") {
        status = GG_REQUEST_HANDLED;
    }
    // SAFETY: checked non-NULL; the caller's promise that they are live and writable.
    unsafe { finish(ggreq, result, status, answer) }
}

/// `gg_get_thing_shadow`.
///
/// # Safety
/// `ggreq` is a live request, `thing_name` NUL-terminated, `result` writable.
#[no_mangle]
pub unsafe extern "C" fn gg_get_thing_shadow(
    ggreq: *mut Request,
    thing_name: *const c_char,
    result: *mut GgRequestResult,
) -> c_int {
    // SAFETY: the caller's promises are passed on.
    guard("gg_get_thing_shadow", || unsafe {
        shadow("get", ggreq, thing_name, std::ptr::null(), result)
    })
}

/// `gg_update_thing_shadow`.
///
/// # Safety
/// As `gg_get_thing_shadow`, and `update_payload` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gg_update_thing_shadow(
    ggreq: *mut Request,
    thing_name: *const c_char,
    update_payload: *const c_char,
    result: *mut GgRequestResult,
) -> c_int {
    // SAFETY: the caller's promises are passed on.
    guard("gg_update_thing_shadow", || unsafe {
        shadow("update", ggreq, thing_name, update_payload, result)
    })
}

/// `gg_delete_thing_shadow`.
///
/// # Safety
/// As `gg_get_thing_shadow`.
#[no_mangle]
pub unsafe extern "C" fn gg_delete_thing_shadow(
    ggreq: *mut Request,
    thing_name: *const c_char,
    result: *mut GgRequestResult,
) -> c_int {
    // SAFETY: the caller's promises are passed on.
    guard("gg_delete_thing_shadow", || unsafe {
        shadow("delete", ggreq, thing_name, std::ptr::null(), result)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_become_path_segments() {
        assert_eq!(
            path_segment("arn:aws:lambda:us-east-1:1:function:f:$LATEST"),
            "arn:aws:lambda:us-east-1:1:function:f:$LATEST"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn refusals_map_to_documented_statuses() {
        assert_eq!(refused(429), GG_REQUEST_AGAIN);
        assert_eq!(refused(503), GG_REQUEST_AGAIN);
        assert_eq!(refused(400), GG_REQUEST_UNKNOWN);
        assert!(error_document(
            br#"{"code":404,"message":"no shadow"}"#,
            "code",
            "message"
        ));
        assert!(!error_document(
            br#"{"state":{"reported":{"code":1,"message":"x"}}}"#,
            "code",
            "message"
        ));
        assert!(!error_document(b"not json", "code", "message"));
    }

    #[test]
    fn calls_before_init_and_null_arguments_are_errors_not_crashes() {
        let mut amount = 0usize;
        // SAFETY: NULL and valid pointers as the calls document.
        unsafe {
            assert_eq!(
                gg_request_read(std::ptr::null_mut(), std::ptr::null_mut(), 0, &mut amount),
                GGE_INVALID_PARAMETER
            );
            assert_eq!(
                gg_lambda_handler_read(std::ptr::null_mut(), 0, &mut amount),
                GGE_INVALID_STATE
            );
            let mut req: *mut Request = std::ptr::null_mut();
            assert_eq!(gg_request_init(&mut req), GGE_SUCCESS);
            let mut result = GgRequestResult { request_status: -1 };
            assert_eq!(
                gg_publish(req, std::ptr::null(), std::ptr::null(), 0, &mut result),
                GGE_INVALID_STATE
            );
            assert_eq!(gg_request_close(req), GGE_SUCCESS);
        }
        assert_eq!(gg_global_init(7), GGE_INVALID_PARAMETER);
    }
}
