//! End-to-end: Greengrass V1 native functions (`Runtime` `executable`) written in C against
//! Evergreen's `greengrasssdk.h`, built with the system C compiler at test time and linked with
//! `-laws-greengrass-core-sdk-c` (Evergreen's cdylib, `supervisor/sdk-c`), then run by the
//! real runtime on the lambda link with `LD_LIBRARY_PATH` leading to its copy of the library.
//!
//! Without a C compiler (`cc`) the tests say so loudly and skip. Results travel back the way
//! V1 functions report: publishes, routed to an `eg-fn record` function.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);

/// The library as cargo builds it (a dev-dependency of this crate, so it is built with the tests).
const CARGO_LIBRARY: &str = "libaws_greengrass_core_sdk_c.so";

const STR_VALUE: &str = "c-secret-42";

/// The header's directory.
fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../supervisor/sdk-c/include")
}

/// `cc`, or `None` with a loud note.
fn cc_or_skip() -> Option<()> {
    if !have("cc") {
        eprintln!("SKIPPED: no C compiler (`cc`) on PATH: the C function tests need one (apt-get install gcc)");
        return None;
    }
    Some(())
}

/// Cargo's build of the library.
fn library() -> PathBuf {
    find_bin(CARGO_LIBRARY).unwrap_or_else(|e| panic!("{e}"))
}

/// `<dir>/lib/libaws-greengrass-core-sdk-c.so`, V1's name for `library`, as a linker finds it.
fn link_dir(dir: &Path, library: &Path) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).expect("lib dir");
    let _ = std::fs::remove_file(lib.join("libaws-greengrass-core-sdk-c.so"));
    std::os::unix::fs::symlink(library, lib.join("libaws-greengrass-core-sdk-c.so"))
        .expect("symlink");
    lib
}

/// Compiles `source` into `dir/name`, linked against the library in `lib` (no rpath: at run
/// time the runtime's `LD_LIBRARY_PATH` finds it).
fn build_c(dir: &Path, name: &str, source: &str, lib: &Path, extra: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).expect("write C source");
    let out = dir.join(name);
    let result = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-I")
        .arg(include_dir())
        .arg("-L")
        .arg(lib)
        .args(extra)
        .arg("-laws-greengrass-core-sdk-c")
        .output()
        .expect("run cc");
    assert!(
        result.status.success(),
        "cc {name}.c failed: {}",
        output_text(&result)
    );
    out
}

/// A native function in the group: `Executable` is the program.
fn c_function(name: &str, program: &Path, pinned: bool, vars: Value) -> Value {
    json!({
        "Id": name,
        "FunctionArn": fn_arn(name),
        "FunctionConfiguration": {
            "Executable": program,
            "Runtime": "executable",
            "Pinned": pinned,
            "Timeout": 5,
            "EncodingType": "binary",
            "Environment": {
                "Variables": vars,
                "Execution": { "IsolationMode": "NoContainer" },
                "ResourceAccessPolicies": [ { "ResourceId": "Str", "Permission": "ro" } ]
            }
        }
    })
}

fn secret_arn(name_with_suffix: &str) -> String {
    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name_with_suffix}")
}

fn secret_resource(id: &str, arn: &str) -> Value {
    json!({
        "Id": id,
        "Name": id,
        "ResourceDataContainer": { "SecretsManagerSecretResourceData": { "ARN": arn } }
    })
}

// An on-demand handler in the style of AWS's invokee example: reads the whole event, answers
// it upper-cased, and answers "fail" with gg_lambda_handler_write_error.
const UPPER: &str = r#"
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "greengrasssdk.h"

static void handler(const gg_lambda_context *cxt) {
    char event[256];
    char out[300];
    size_t total = 0, n = 0, i;
    int len;
    do {
        if (gg_lambda_handler_read(event + total, sizeof(event) - 1 - total, &n) != GGE_SUCCESS) {
            gg_log(GG_LOG_ERROR, "gg_lambda_handler_read failed");
            return;
        }
        total += n;
    } while (n);
    event[total] = '\0';
    gg_log(GG_LOG_INFO, "upper got %zu bytes for %s", total, cxt->function_arn);
    gg_log(GG_LOG_INFO, "context for %s: %s", event, cxt->client_context);
    if (strcmp(event, "fail") == 0) {
        gg_log(GG_LOG_WARN, "asked to fail,\nsecond line");
        gg_lambda_handler_write_error("asked to fail");
        /* Answering twice is refused. */
        if (gg_lambda_handler_write_response("x", 1) != GGE_INVALID_STATE) {
            gg_log(GG_LOG_ERROR, "a second answer was accepted");
        }
        return;
    }
    if (strcmp(event, "hang") == 0) {
        sleep(60);
    }
    for (i = 0; i < total; i++) {
        event[i] = (char)toupper((unsigned char)event[i]);
    }
    len = snprintf(out, sizeof out, "UPPER:%s", event);
    gg_lambda_handler_write_response(out, (size_t)len);
}

int main(void) {
    if (gg_global_init(0) != GGE_SUCCESS) {
        return 1;
    }
    gg_runtime_start(handler, 0);
    return 1;
}
"#;

// A pinned function that drives the API from main with the runtime on its own thread
// (GG_RT_OPT_ASYNC) and publishes each step's outcome on
// c/result/<step>/<gg_error>/<request_status>, the answer it read as payload.
const DRIVER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "greengrasssdk.h"

static char answer[8192];

static size_t read_all(gg_request req) {
    size_t total = 0, n = 0;
    do {
        if (gg_request_read(req, answer + total, sizeof(answer) - 1 - total, &n) != GGE_SUCCESS) {
            break;
        }
        total += n;
    } while (n);
    answer[total] = '\0';
    return total;
}

static void report(const char *step, gg_error err, const gg_request_result *res, size_t len) {
    char topic[128];
    gg_request req = NULL;
    gg_request_result r;
    snprintf(topic, sizeof topic, "c/result/%s/%d/%d", step, (int)err, (int)res->request_status);
    gg_request_init(&req);
    gg_publish(req, topic, answer, len, &r);
    gg_request_close(req);
}

static void handler(const gg_lambda_context *cxt) {
    (void)cxt;
}

int main(void) {
    gg_request req = NULL;
    gg_request_result res;
    gg_publish_options po = NULL;
    gg_invoke_options opts;
    gg_error err;
    size_t len;

    if (gg_global_init(0) != GGE_SUCCESS) {
        return 1;
    }
    if (gg_runtime_start(handler, GG_RT_OPT_ASYNC) != GGE_SUCCESS) {
        return 1;
    }
    gg_request_init(&req);

    memset(&opts, 0, sizeof opts);
    opts.function_arn = getenv("UPPER_ARN");
    opts.type = GG_INVOKE_REQUEST_RESPONSE;
    opts.payload = "hello c";
    opts.payload_size = 7;
    err = gg_invoke(req, &opts, &res);
    len = read_all(req);
    report("invoke", err, &res, len);

    opts.payload = "fail";
    opts.payload_size = 4;
    err = gg_invoke(req, &opts, &res);
    len = read_all(req);
    report("fail", err, &res, len);

    opts.payload = "hang";
    err = gg_invoke(req, &opts, &res);
    len = read_all(req);
    report("hang", err, &res, len);

    err = gg_update_thing_shadow(req, "cthing", "{\"state\":{\"reported\":{\"temp\":21}}}", &res);
    len = read_all(req);
    report("update", err, &res, len);
    err = gg_get_thing_shadow(req, "cthing", &res);
    len = read_all(req);
    report("get", err, &res, len);
    err = gg_delete_thing_shadow(req, "cthing", &res);
    len = read_all(req);
    report("delete", err, &res, len);
    err = gg_get_thing_shadow(req, "cthing", &res);
    len = read_all(req);
    report("gone", err, &res, len);

    err = gg_get_secret_value(req, "greengrass-str", NULL, NULL, &res);
    len = read_all(req);
    report("secret", err, &res, len);
    err = gg_get_secret_value(req, "greengrass-other", NULL, NULL, &res);
    len = read_all(req);
    report("secret-other", err, &res, len);

    gg_publish_options_init(&po);
    gg_publish_options_set_queue_full_policy(po, GG_QUEUE_FULL_POLICY_ALL_OR_ERROR);
    err = gg_publish_with_options(req, "c/hello", "from C", 6, po, &res);
    gg_publish_options_free(po);
    answer[0] = '\0';
    report("publish", err, &res, 0);

    /* A subscription delivery to the C handler. */
    err = gg_publish(req, "c/to-upper", "sub", 3, &res);
    report("to-upper", err, &res, 0);

    res.request_status = GG_REQUEST_SUCCESS;
    err = gg_publish(req, NULL, "x", 1, &res);
    report("no-topic", err, &res, 0);

    gg_request_close(req);
    for (;;) {
        pause();
    }
}
"#;

/// The reports of the driver: step → (gg_error, request_status, payload).
fn reports(file: &Path) -> std::collections::BTreeMap<String, (i64, i64, String)> {
    records(file)
        .into_iter()
        .filter_map(|r| {
            let topic = r["topic"].as_str()?.strip_prefix("c/result/")?.to_string();
            let mut parts = topic.split('/');
            let step = parts.next()?.to_string();
            let err = parts.next()?.parse().ok()?;
            let status = parts.next()?.parse().ok()?;
            Some((step, (err, status, r["payload"].as_str()?.to_string())))
        })
        .collect()
}

#[test]
fn c_functions_invoke_publish_read_shadows_and_secrets_and_log_through_the_c_sdk() {
    if cc_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let library = library();
    let lib = link_dir(dir.path(), &library);
    let upper = build_c(dir.path(), "upper", UPPER, &lib, &[]);
    let driver = build_c(dir.path(), "driver", DRIVER, &lib, &[]);
    put_secret(
        &dir.path().join("root"),
        "greengrass-str",
        STR_VALUE.as_bytes(),
    )
    .expect("put secret");
    put_secret(
        &dir.path().join("root"),
        "greengrass-other",
        b"not for the driver",
    )
    .expect("put secret");
    let out = dir.path().join("got.jsonl");
    let mut upper_fn = c_function("upper", &upper, false, json!({}));
    upper_fn["FunctionConfiguration"]["Timeout"] = json!(2);
    let mut g = group(
        vec![
            upper_fn,
            c_function(
                "driver",
                &driver,
                true,
                json!({ "UPPER_ARN": fn_arn("upper") }),
            ),
            function("rec", &format!("record {}", out.display())),
        ],
        vec![
            sub("driver-to-rec", &fn_arn("driver"), "c/#", &fn_arn("rec")),
            sub(
                "driver-to-upper",
                &fn_arn("driver"),
                "c/to-upper",
                &fn_arn("upper"),
            ),
        ],
    );
    g["ResourceDefinitionVersion"] = json!({ "Resources": [
        secret_resource("Str", &secret_arn("greengrass-str-AbCdEf")),
        secret_resource("Other", &secret_arn("greengrass-other-QwErTy")),
    ]});
    let port = free_port().expect("a free port");
    let rt = Runtime::start_config_in(
        dir,
        &g,
        &json!({ "coreThing": { "ggDaemonPort": port } }),
        &[("EVERGREEN_C_SDK_LIBRARY", library.as_os_str())],
    );
    let got = wait_for(LIMIT, || {
        let r = reports(&out);
        r.contains_key("no-topic").then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "every step reported: {:?}\ndriver log:\n{}\nupper log:\n{}",
            records(&out),
            read(&rt.function_log("driver")),
            read(&rt.function_log("upper"))
        )
    });
    let step = |name: &str| got.get(name).cloned().unwrap_or_default();

    // gg_invoke (RequestResponse) of an on-demand C handler: GGE_SUCCESS, GG_REQUEST_SUCCESS,
    // and the handler's transformed payload readable with gg_request_read.
    assert_eq!(step("invoke"), (0, 0, "UPPER:HELLO C".into()), "{got:?}");
    // gg_lambda_handler_write_error: the caller's status is GG_REQUEST_HANDLED (1) and the
    // answer is the error document.
    let (err, status, body) = step("fail");
    assert_eq!((err, status), (0, 1), "{got:?}");
    let body: Value = serde_json::from_str(&body).expect("error document");
    assert_eq!(body["errorMessage"], "asked to fail");

    // A handler that outlives its Timeout is killed: GG_REQUEST_UNHANDLED (2).
    let (err, status, body) = step("hang");
    assert_eq!((err, status), (0, 2), "{got:?}");
    assert!(body.contains("Unhandled"), "{body}");

    // Shadows: update then get returns the reported state; a get after delete is a rejection
    // (GG_REQUEST_HANDLED with the shadow service's {"code","message"}).
    assert_eq!((step("update").0, step("update").1), (0, 0), "{got:?}");
    let doc: Value = serde_json::from_str(&step("get").2).expect("shadow document");
    assert_eq!(step("get").1, 0, "{got:?}");
    assert_eq!(doc["state"]["reported"]["temp"], 21, "{doc}");
    assert_eq!(step("delete").1, 0, "{got:?}");
    let (err, status, body) = step("gone");
    assert_eq!((err, status), (0, 1), "{got:?}");
    let body: Value = serde_json::from_str(&body).expect("rejection");
    assert_eq!(body["code"], 404, "{body}");

    // Secrets: the granted one in the GetSecretValue shape; one not granted is refused
    // (GG_REQUEST_HANDLED with {"Status","Message"}).
    let (err, status, body) = step("secret");
    assert_eq!((err, status), (0, 0), "{got:?}");
    let secret: Value = serde_json::from_str(&body).expect("secret document");
    assert_eq!(secret["SecretString"], STR_VALUE);
    assert_eq!(secret["Name"], "greengrass-str");
    let (err, status, body) = step("secret-other");
    assert_eq!((err, status), (0, 1), "{got:?}");
    let refusal: Value = serde_json::from_str(&body).expect("refusal");
    assert_eq!(refusal["Status"], 403, "{refusal}");

    // gg_publish_with_options (AllOrError) reaches another function through the router.
    assert_eq!(step("publish").0, 0, "{got:?}");
    assert_eq!(step("publish").1, 0, "{got:?}");
    let hello: Vec<Value> = records(&out)
        .into_iter()
        .filter(|r| r["topic"] == "c/hello")
        .collect();
    assert_eq!(hello.len(), 1, "{hello:?}");
    assert_eq!(hello[0]["payload"], "from C");
    assert_eq!(hello[0]["source"], fn_arn("driver"));
    // A NULL topic is GGE_INVALID_PARAMETER (2), before anything is sent.
    assert_eq!(step("no-topic").0, 2, "{got:?}");

    // gg_log lines land in the function's own log at their level, one line per line; the
    // Handled error is logged by the runtime too.
    let log = read(&rt.function_log("upper"));
    let info = format!("upper got 7 bytes for {}", fn_arn("upper"));
    assert!(
        log.lines()
            .any(|l| l.contains("[INFO]") && l.contains(&info)),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("[WARN]") && l.ends_with("asked to fail,")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("[WARN]") && l.ends_with("second line")),
        "{log}"
    );
    assert!(log.contains("Handled error: asked to fail"), "{log}");

    // A subscription delivery reaches the C handler with the caller's client context as sent:
    // base64 JSON whose custom.subject is the topic.
    let context = wait_for(LIMIT, || {
        read(&rt.function_log("upper")).lines().find_map(|l| {
            l.split_once("context for sub: ")
                .map(|(_, c)| c.trim().to_string())
        })
    })
    .unwrap_or_else(|| panic!("no delivery: {}", read(&rt.function_log("upper"))));
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&context)
        .expect("base64 client context");
    let context: Value = serde_json::from_slice(&decoded).expect("JSON client context");
    assert_eq!(context["custom"]["subject"], "c/to-upper", "{context}");
    assert!(!log.contains("a second answer was accepted"), "{log}");
}

// A program as V1 users built it against AWS's stub library: it only proves which library
// answered (our gg_global_init refuses opt 7 with GGE_INVALID_PARAMETER, 2; the stub answers 99).
const PROBE: &str = r#"
#include <stdio.h>
#include "greengrasssdk.h"

int main(void) {
    gg_error err = gg_global_init(7);
    printf("gg_global_init=%d\n", (int)err);
    gg_log(GG_LOG_INFO, "probe %s %d", "logged", 42);
    return 0;
}
"#;

// A stand-in for AWS's stub library, built with the SDK's symbol versions (our version script):
// every call answers 99.
const STUB: &str = r#"
#include "greengrasssdk.h"
gg_error gg_global_init(uint32_t opt) { (void)opt; return (gg_error)99; }
gg_error gg_log(gg_log_level level, const char *format, ...) { (void)level; (void)format; return (gg_error)99; }
"#;

#[test]
fn a_program_linked_against_a_versioned_stub_runs_unchanged_on_evergreens_library() {
    if cc_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let stub_dir = dir.path().join("stub");
    std::fs::create_dir_all(&stub_dir).expect("stub dir");
    let stub_src = dir.path().join("stub.c");
    std::fs::write(&stub_src, STUB).expect("stub source");
    let map = Path::new(env!("CARGO_MANIFEST_DIR")).join("../supervisor/sdk-c/greengrasssdk.map");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(stub_dir.join("libaws-greengrass-core-sdk-c.so"))
        .arg(&stub_src)
        .arg("-I")
        .arg(include_dir())
        .arg(format!("-Wl,--version-script={}", map.display()))
        .arg("-Wl,-soname,libaws-greengrass-core-sdk-c.so")
        .output()
        .expect("run cc");
    assert!(built.status.success(), "stub: {}", output_text(&built));
    let probe = build_c(dir.path(), "probe", PROBE, &stub_dir, &[]);
    let run = |lib: &Path| {
        let out = Command::new(&probe)
            .env("LD_LIBRARY_PATH", lib)
            .output()
            .expect("run probe");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Linked against the stub, it runs on the stub...
    assert_eq!(run(&stub_dir).0, "gg_global_init=99\n");
    // ...and unchanged on Evergreen's library: every versioned symbol resolves, without the
    // loader's "no version information" complaint.
    let ours = link_dir(dir.path(), &library());
    let (stdout, stderr) = run(&ours);
    assert_eq!(stdout, "gg_global_init=2\n", "stderr: {stderr}");
    assert!(stderr.contains("[INFO] probe logged 42"), "{stderr}");
    assert!(!stderr.contains("version"), "{stderr}");
}

// The header as C89 (AWS's SDK is C89) and as C++, with the documented enumerator values.
const HEADER_CHECK: &str = r#"
#include "greengrasssdk.h"
typedef char check_error[(GGE_SUCCESS == 0 && GGE_OUT_OF_MEMORY == 1 && GGE_INVALID_PARAMETER == 2
    && GGE_INVALID_STATE == 3 && GGE_INTERNAL_FAILURE == 4) ? 1 : -1];
typedef char check_status[(GG_REQUEST_SUCCESS == 0 && GG_REQUEST_HANDLED == 1
    && GG_REQUEST_UNHANDLED == 2 && GG_REQUEST_UNKNOWN == 3 && GG_REQUEST_AGAIN == 4) ? 1 : -1];
typedef char check_log[(GG_LOG_DEBUG == 1 && GG_LOG_FATAL == 5) ? 1 : -1];
typedef char check_invoke[(GG_INVOKE_EVENT == 0 && GG_INVOKE_REQUEST_RESPONSE == 1) ? 1 : -1];
typedef char check_policy[(GG_QUEUE_FULL_POLICY_BEST_EFFORT == 0
    && GG_QUEUE_FULL_POLICY_ALL_OR_ERROR == 1 && GG_RT_OPT_ASYNC == 1) ? 1 : -1];
typedef char check_size[(sizeof(gg_error) == 4 && sizeof(gg_request_result) == 4) ? 1 : -1];
int main(void) { return 0; }
"#;

#[test]
fn the_header_compiles_as_c89_and_cpp_with_the_documented_values() {
    if cc_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("check.c");
    std::fs::write(&src, HEADER_CHECK).expect("write");
    let c89 = Command::new("cc")
        .args([
            "-std=c89",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .output()
        .expect("cc");
    assert!(c89.status.success(), "C89: {}", output_text(&c89));
    if !have("c++") {
        eprintln!("SKIPPED (the C++ half): no C++ compiler (`c++`) on PATH (apt-get install g++)");
        return;
    }
    let cpp = Command::new("c++")
        .args(["-x", "c++", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
        .arg("-I")
        .arg(include_dir())
        .arg(&src)
        .output()
        .expect("c++");
    assert!(cpp.status.success(), "C++: {}", output_text(&cpp));
}

// A pinned C function that reports, from inside its container, its hostname and whether a
// host file beside it is visible.
const BOXED: &str = r#"
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "greengrasssdk.h"

static void handler(const gg_lambda_context *cxt) {
    (void)cxt;
}

int main(void) {
    char host[128] = "";
    char view[512];
    gg_request req = NULL;
    gg_request_result res;
    if (gg_global_init(0) != GGE_SUCCESS || gg_runtime_start(handler, GG_RT_OPT_ASYNC) != GGE_SUCCESS) {
        return 1;
    }
    gethostname(host, sizeof host - 1);
    snprintf(view, sizeof view, "{\"hostname\":\"%s\",\"sees_host_file\":%s}", host,
             access(getenv("EG_TEST_HOST_FILE"), F_OK) == 0 ? "true" : "false");
    gg_request_init(&req);
    gg_publish(req, "box/view", view, strlen(view), &res);
    gg_request_close(req);
    for (;;) {
        pause();
    }
}
"#;

#[test]
fn a_c_function_runs_in_a_container_with_the_library_bound() {
    evergreen_tests::require_containers!();
    if cc_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let library = library();
    let lib = link_dir(dir.path(), &library);
    let boxed = build_c(dir.path(), "boxed", BOXED, &lib, &[]);
    let host_file = dir.path().join("host-only");
    std::fs::write(&host_file, "x").expect("write");
    let out = dir.path().join("got.jsonl");
    let mut f = c_function(
        "boxed",
        &boxed,
        true,
        json!({ "EG_TEST_HOST_FILE": host_file }),
    );
    f["FunctionConfiguration"]["Environment"]["Execution"]["IsolationMode"] =
        json!("GreengrassContainer");
    f["FunctionConfiguration"]["Environment"]["ResourceAccessPolicies"] = json!([]);
    f["FunctionConfiguration"]["MemorySize"] = json!(16384);
    let port = free_port().expect("a free port");
    let rt = Runtime::start_config_in(
        dir,
        &group(
            vec![f, function("rec", &format!("record {}", out.display()))],
            vec![sub("box", &fn_arn("boxed"), "box/#", &fn_arn("rec"))],
        ),
        &json!({ "coreThing": { "ggDaemonPort": port } }),
        &[("EVERGREEN_C_SDK_LIBRARY", library.as_os_str())],
    );
    let got = wait_for(LIMIT, || {
        records(&out).into_iter().find(|r| r["topic"] == "box/view")
    })
    .unwrap_or_else(|| panic!("{}", read(&rt.function_log("boxed"))));
    let view: Value = serde_json::from_str(got["payload"].as_str().unwrap_or("")).expect("JSON");
    assert_eq!(view["hostname"], "boxed", "its own UTS namespace: {view}");
    assert_eq!(
        view["sees_host_file"], false,
        "only its program and the library are bound: {view}"
    );
}
