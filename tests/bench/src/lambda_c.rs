//! `eg-lambda-bench --runtime c`: the same round trip and cold invokes as the Python case, with
//! native functions written in C against Evergreen's `greengrasssdk.h`, built with the system
//! `cc` and linked with Evergreen's `libaws-greengrass-core-sdk-c.so` (`supervisor/sdk-c`, a
//! dependency of this crate so that the bench's build builds it).
//!
//! The functions mirror the Python ones: `driver` (pinned; the runtime loop on its own thread,
//! `GG_RT_OPT_ASYNC`) publishes `bench/ping` with the round's number and waits until its
//! handler receives the matching `bench/pong` from `echo` (pinned), timed with
//! `clock_gettime(CLOCK_MONOTONIC)`; then it invokes `cold0..coldK` (on-demand, one program)
//! once each with a RequestResponse `gg_invoke`. It publishes the figures on `bench/stats` in
//! the Python driver's JSON shape.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

/// Cargo's file name for the library (in `target/<profile>/deps/` when built as a dependency).
const CARGO_LIBRARY: &str = "libaws_greengrass_core_sdk_c.so";

const DRIVER: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "greengrasssdk.h"

#define WARMUP 50

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long arrived = -1;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void handler(const gg_lambda_context *cxt) {
    char event[64];
    size_t total = 0, n = 0;
    (void)cxt;
    do {
        if (gg_lambda_handler_read(event + total, sizeof(event) - 1 - total, &n)) return;
        total += n;
    } while (n);
    event[total] = '\0';
    pthread_mutex_lock(&mu);
    arrived = strtol(event, NULL, 10);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void publish(const char *topic, const char *text) {
    gg_request req = NULL;
    gg_request_result res;
    gg_request_init(&req);
    gg_publish(req, topic, text, strlen(text), &res);
    gg_request_close(req);
}

int main(void) {
    long reps = strtol(getenv("REPS"), NULL, 10), cold = strtol(getenv("COLD"), NULL, 10), i, k;
    const char *cold_arn = getenv("COLD_ARN");
    size_t cap = (size_t)(reps + cold) * 24 + 64, used = 0;
    char *stats = malloc(cap);
    char number[32], arn[256];
    gg_request req = NULL;
    gg_request_result res;
    gg_invoke_options opts;

    if (!stats || gg_global_init(0) || gg_runtime_start(handler, GG_RT_OPT_ASYNC)) return 1;
    usleep(500000);
    used += (size_t)snprintf(stats + used, cap - used, "{\"rtt_ms\":[");
    for (i = 0; i < WARMUP + reps; i++) {
        double t0 = now_ms();
        struct timespec deadline;
        int late = 0;
        snprintf(number, sizeof number, "%ld", i);
        publish("bench/ping", number);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        pthread_mutex_lock(&mu);
        while (arrived != i && !late) late = pthread_cond_timedwait(&cv, &mu, &deadline) != 0;
        pthread_mutex_unlock(&mu);
        if (late) {
            snprintf(stats, cap, "{\"error\":\"no pong for %ld\"}", i);
            publish("bench/stats", stats);
            for (;;) pause();
        }
        if (i >= WARMUP) {
            used += (size_t)snprintf(stats + used, cap - used, "%s%.3f", i > WARMUP ? "," : "", now_ms() - t0);
        }
    }
    used += (size_t)snprintf(stats + used, cap - used, "],\"cold_invoke_ms\":[");
    gg_request_init(&req);
    for (k = 0; k < cold; k++) {
        char answer[64];
        size_t n = 0;
        double t0 = now_ms();
        snprintf(arn, sizeof arn, "%s%ld:1", cold_arn, k);
        memset(&opts, 0, sizeof opts);
        opts.function_arn = arn;
        opts.type = GG_INVOKE_REQUEST_RESPONSE;
        opts.payload = "{}";
        opts.payload_size = 2;
        gg_invoke(req, &opts, &res);
        while (gg_request_read(req, answer, sizeof answer, &n) == GGE_SUCCESS && n) {
        }
        used += (size_t)snprintf(stats + used, cap - used, "%s%.3f", k ? "," : "", now_ms() - t0);
    }
    gg_request_close(req);
    snprintf(stats + used, cap - used, "]}");
    publish("bench/stats", stats);
    for (;;) pause();
}
"#;

const ECHO: &str = r#"
#include <string.h>
#include "greengrasssdk.h"

static void handler(const gg_lambda_context *cxt) {
    char event[64];
    size_t total = 0, n = 0;
    gg_request req = NULL;
    gg_request_result res;
    (void)cxt;
    do {
        if (gg_lambda_handler_read(event + total, sizeof(event) - total, &n)) return;
        total += n;
    } while (n);
    gg_request_init(&req);
    gg_publish(req, "bench/pong", event, total, &res);
    gg_request_close(req);
}

int main(void) {
    if (gg_global_init(0)) return 1;
    return gg_runtime_start(handler, 0);
}
"#;

const COLD: &str = r#"
#include "greengrasssdk.h"

static void handler(const gg_lambda_context *cxt) {
    (void)cxt;
    gg_lambda_handler_write_response("{\"ok\":true}", 11);
}

int main(void) {
    if (gg_global_init(0)) return 1;
    return gg_runtime_start(handler, 0);
}
"#;

/// Cargo's build of the library next to this bench (`deps/` or beside it).
pub fn library() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("this bench has no directory")?;
    [
        dir.join("deps").join(CARGO_LIBRARY),
        dir.join(CARGO_LIBRARY),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        format!(
            "{CARGO_LIBRARY} is not built next to this bench: run `{}`",
            crate::BUILD
        )
    })
}

/// Compiles `source` as `dir/name` against the library (linked under V1's name from `dir/lib`).
fn build(dir: &Path, name: &str, source: &str, library: &Path) -> Result<PathBuf, String> {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).map_err(|e| e.to_string())?;
    let link = lib.join("libaws-greengrass-core-sdk-c.so");
    if !link.exists() {
        std::os::unix::fs::symlink(library, &link).map_err(|e| e.to_string())?;
    }
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).map_err(|e| e.to_string())?;
    let out = dir.join(name);
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../supervisor/sdk-c/include");
    let result = Command::new("cc")
        .args(["-std=gnu99", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-I")
        .arg(include)
        .arg("-L")
        .arg(&lib)
        .args(["-laws-greengrass-core-sdk-c", "-lpthread"])
        .output()
        .map_err(|e| format!("cannot run cc (a C compiler is needed for --runtime c): {e}"))?;
    if !result.status.success() {
        return Err(format!(
            "cc {name}.c failed: {}",
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    Ok(out)
}

fn native(name: &str, program: &Path, pinned: bool, vars: Value) -> Value {
    json!({
        "Id": name,
        "FunctionArn": evergreen_tests::fn_arn(name),
        "FunctionConfiguration": {
            "Executable": program,
            "Runtime": "executable",
            "Pinned": pinned,
            "Timeout": 10,
            "EncodingType": "binary",
            "Environment": {
                "Variables": vars,
                "Execution": { "IsolationMode": "NoContainer" }
            }
        }
    })
}

/// The C case's functions (`driver`, `echo`, `cold0..`) built in `dir`.
pub fn functions(dir: &Path, reps: usize, cold: usize) -> Result<Vec<Value>, String> {
    let library = library()?;
    let driver = build(dir, "driver", DRIVER, &library)?;
    let echo = build(dir, "echo", ECHO, &library)?;
    let cold_program = build(dir, "cold", COLD, &library)?;
    let cold_arn = evergreen_tests::fn_arn("cold");
    let cold_prefix = cold_arn.trim_end_matches(":1").to_string();
    let mut out = vec![
        native(
            "driver",
            &driver,
            true,
            json!({ "REPS": reps.to_string(), "COLD": cold.to_string(), "COLD_ARN": cold_prefix }),
        ),
        native("echo", &echo, true, json!({})),
    ];
    for k in 0..cold {
        out.push(native(&format!("cold{k}"), &cold_program, false, json!({})));
    }
    Ok(out)
}
