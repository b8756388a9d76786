//! End-to-end: the read-only status page (issue 23 item 8). The real binary serves it on
//! `evergreen.statusPage`; `evergreen status --page-url` gives its URL with the token; plain
//! HTTP checks the access rules, the headers and the document, and Debian's Chromium, headless,
//! renders the page, runs its script and takes the screenshot a field technician would see
//! (written to `<target dir>/test-artefacts/status-page.png`, its path printed).
//!
//! The group: `ticker` publishes ten messages a second to `sink` (the sparklines), `evil`
//! logs a line with a `<script>` element in it (untrusted text the page must show as text),
//! and `flaky` exits until its crash-loop limit marks it `Failed`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use evergreen_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(30);
/// What `evil` writes into its log (through its topic's name).
const EVIL: &str = "evil/<script>alert(1)</script>";

/// The runtime with the page on, its URL (with the token), and the token.
struct Page {
    rt: Runtime,
    url: String,
    port: u16,
    token: String,
}

fn start() -> Page {
    let record = "/dev/null";
    let g = group(
        vec![
            function("ticker", "publish tick/n 1000000 100"),
            function("sink", &format!("record {record}")),
            function("evil", &format!("publish {EVIL} 2 0")),
            function("flaky", "exit 30 3"),
        ],
        vec![sub("s", &fn_arn("ticker"), "tick/n", &fn_arn("sink"))],
    );
    let rt = Runtime::start_with(
        &g,
        &json!({
            "statusPage": { "address": "127.0.0.1:0", "sampleSecs": 1 },
            "components": { "flaky": { "restart": { "crashLoopLimit": 2 } } }
        }),
    );
    let config = rt.path("config.json");
    let url = wait_for(LIMIT, || {
        let out = evergreen_with(&config, &["status", "--page-url"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
    .expect("evergreen status --page-url prints the URL once the runtime runs");
    let (base, token) = url.split_once("/?token=").expect("a URL with a token");
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    assert!(base.starts_with("http://127.0.0.1:"), "loopback: {base}");
    // The generated token is kept owner-only under the root.
    let file = rt.dir.path().join("root/status-page.token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read(&file).trim(), token);
    let token = token.to_string();
    Page {
        rt,
        url,
        port,
        token,
    }
}

/// One answer: status, head (lower-cased names) and body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with(&prefix)
                .then(|| l[prefix.len()..].trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

fn api(page: &Page) -> Value {
    let auth = format!("Bearer {}", page.token);
    let a = request(page.port, "GET", "/api/status", &[("Authorization", &auth)]);
    assert_eq!(a.status, 200, "{}", a.text());
    serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.text()))
}

fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no component {name} in {doc}"))
}

/// Waits until the document shows `flaky` failed, `evil`'s line logged and `ticker`'s rate
/// sampled at least `points` times.
fn settled(page: &Page, points: usize) -> Value {
    wait_for(LIMIT, || {
        let doc = api(page);
        let failed = component(&doc, "flaky")["state"] == "Failed";
        let logged = component(&doc, "evil")["log"]
            .as_array()?
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(EVIL)));
        let rates = component(&doc, "ticker")["rateOut"]
            .as_array()?
            .iter()
            .filter(|r| r.as_f64().is_some_and(|r| r > 0.0))
            .count();
        (failed && logged && rates >= points).then_some(doc)
    })
    .expect("flaky failed, evil logged, ticker sampled")
}

#[test]
fn the_page_needs_its_token_is_read_only_and_shows_the_running_group() {
    let page = start();
    let port = page.port;

    // Without the token, or with another one: 401, whatever the path.
    for (path, headers) in [
        ("/", vec![]),
        ("/api/status", vec![]),
        ("/?token=0000000000000000", vec![]),
        (
            "/api/status",
            vec![("Cookie", "evergreen_status=0000000000000000")],
        ),
        ("/api/status", vec![("Authorization", "Bearer nope")]),
    ] {
        let a = request(port, "GET", path, &headers);
        assert_eq!(a.status, 401, "{path} {headers:?}: {}", a.text());
        assert!(!a.text().contains(&page.token));
    }

    // The URL's token once: a redirect that keeps it in an HttpOnly, SameSite=Strict cookie.
    let first = request(port, "GET", &format!("/?token={}", page.token), &[]);
    assert_eq!(first.status, 303, "{}", first.head);
    assert_eq!(first.header("location"), Some("/"));
    let cookie = first.header("set-cookie").expect("a cookie").to_string();
    assert!(cookie.starts_with(&format!("evergreen_status={};", page.token)));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().expect("name=value");
    let html = request(port, "GET", "/", &[("Cookie", pair)]);
    assert_eq!(html.status, 200, "{}", html.text());
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = html.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-eval") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(html.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(html.header("x-frame-options"), Some("DENY"));
    assert!(html.text().contains("<table id=\"components\">"));
    assert!(
        !html.text().contains("src=\"http") && !html.text().contains("href=\"http"),
        "self-contained"
    );

    // Read-only: every other method is 405, with or without the token.
    let auth = format!("Bearer {}", page.token);
    for (method, path) in [
        ("POST", "/"),
        ("POST", "/api/status"),
        ("PUT", "/api/status"),
        ("DELETE", "/"),
    ] {
        for headers in [vec![], vec![("Authorization", auth.as_str())]] {
            let a = request(port, method, path, &headers);
            assert_eq!(a.status, 405, "{method} {path}");
            assert_eq!(a.header("allow"), Some("GET"));
        }
    }
    assert_eq!(
        request(port, "GET", "/nothing-here", &[("Authorization", &auth)]).status,
        404
    );

    // The document is the running group's, as `evergreen status` tells it.
    let doc = settled(&page, 2);
    let raw = request(port, "GET", "/api/status", &[("Authorization", &auth)]);
    assert_eq!(
        raw.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    let body = raw.text();
    assert!(
        !body.contains('<') && body.contains("\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"),
        "markup in strings is escaped in the JSON: {body}"
    );
    let out = evergreen_with(&page.rt.path("config.json"), &["status", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let states = |cs: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = cs
            .as_array()
            .expect("components")
            .iter()
            .map(|c| (c["name"].to_string(), c["state"].to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(states(&doc["components"]), states(&status["components"]));
    let expected: Vec<(String, String)> = [
        ("evil", "Running"),
        ("flaky", "Failed"),
        ("sink", "Running"),
        ("ticker", "Running"),
    ]
    .iter()
    .map(|(n, s)| (format!("\"{n}\""), format!("\"{s}\"")))
    .collect();
    assert_eq!(states(&doc["components"]), expected);
    let flaky = component(&doc, "flaky");
    assert!(
        flaky["restarts"].as_u64().is_some_and(|r| r >= 1),
        "{flaky}"
    );
    let ticker = component(&doc, "ticker");
    assert!(ticker["messagesOut"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(doc["sampleSecs"], 1);
    assert_eq!(doc["title"], "test-core");
    assert_eq!(doc["runtime"]["counts"]["components"], 4);
    assert!(
        doc["log"].as_array().is_some_and(|l| l.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.contains("status page on http://")))),
        "the runtime's log: {doc}"
    );
    // The token is never in the runtime's log.
    let log = read(&page.rt.log_path("system/runtime.log"));
    assert!(!log.contains(&page.token), "{log}");
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(&dir.path().join("root"));
    merge(
        &mut config,
        &json!({ "evergreen": { "statusPage": { "address": "0.0.0.0:0" } } }),
    );
    let config_path = dir.path().join("config.json");
    let group_path = dir.path().join("group.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    std::fs::write(
        &group_path,
        group(vec![function("idle", "sleeper")], vec![]).to_string(),
    )
    .expect("group");
    let mut child = Command::new(evergreen_bin())
        .args(["run", "--config"])
        .arg(&config_path)
        .arg("--group")
        .arg(&group_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start evergreen");
    let status = wait_for(LIMIT, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("a runtime with a public status page and no token started");
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.and_then(|s| s.code()), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "evergreen.statusPage.token: required when evergreen.statusPage.address (0.0.0.0:0) is not a loopback address"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("root/status-page.token").exists(),
        "no token was made for it"
    );
}

/// Where the browser test leaves its screenshot: `<target dir>/test-artefacts/`, beside the
/// build (the tests' own `CARGO_TARGET_TMPDIR` is `<target dir>/tmp`).
fn artefacts_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-artefacts")
}

/// Debian's `chromium`, or `None` after saying loudly why the browser test cannot run.
fn chromium_or_skip() -> Option<&'static str> {
    if have("chromium") {
        return Some("chromium");
    }
    eprintln!(
        "\n*** SKIPPED: the headless browser test needs Chromium, which is not installed \
         (apt-get install -y chromium, as .ci/run does): the page was NOT rendered ***\n"
    );
    None
}

/// Runs headless Chromium on `url` with `args` (a fresh profile each time), bounded.
fn chromium(bin: &str, url: &str, args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        // Long enough for the first poll and a second one (every 2 s at this sample interval).
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start chromium");
    let pid = child.id();
    // A browser that hangs must not hang the test run.
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(90));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().expect("chromium output");
    drop(watchdog);
    out
}

#[test]
fn a_real_browser_renders_components_sparklines_and_escaped_logs() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let page = start();
    // A deployment in the history: the same group again (nothing restarts).
    let deployed = evergreen_with(
        &page.rt.path("config.json"),
        &["deploy", &page.rt.path("group.json").display().to_string()],
    );
    assert!(deployed.status.success(), "{}", output_text(&deployed));
    // Enough samples for a sparkline a reader sees (a quarter of the window at 1 s).
    let doc = settled(&page, 15);
    assert!(
        doc["deployments"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["DeploymentStatus"] == "Success")),
        "{doc}"
    );

    // The DOM after the page's script ran.
    let out = chromium(bin, &page.url, &["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("data-rendered="),
        "the page did not render: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, state) in [
        ("ticker", "Running"),
        ("sink", "Running"),
        ("evil", "Running"),
        ("flaky", "Failed"),
    ] {
        let row_start = dom
            .find(&format!("<tr data-component=\"{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}: {dom}"));
        let row = &dom[row_start..];
        let row = &row[..row.find("</tr>").expect("row end")];
        assert!(
            row.contains(&format!(
                "<span class=\"badge {}\">{state}</span>",
                state.to_lowercase()
            )),
            "{name} {state}: {row}"
        );
        assert!(
            row.contains("<svg class=\"spark\""),
            "{name}'s sparkline: {row}"
        );
        if name == "ticker" {
            let points = row
                .split("<polyline class=\"out\" points=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
                .expect("ticker's out line");
            assert!(points.split(' ').count() >= 4, "several samples: {points}");
        }
    }
    // The log line's markup is text: escaped in the serialized DOM, no element made of it.
    assert!(
        dom.contains("evil/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the line shown as text: {dom}"
    );
    assert!(!dom.contains("<script>alert(1)"), "{dom}");
    assert_eq!(
        dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(dom.contains(">test-core</h1>"), "the title: {dom}");

    // The screenshot a field technician would see.
    let dir = artefacts_dir();
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        bin,
        &page.url,
        &[format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        out.status.success() && png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("status page screenshot: {}", shot.display());
}

/// Bounded as the metrics endpoint: an oversized request head is refused, a connection beyond
/// the limit gets a 503 at once, and a client that sends nothing is closed after the request
/// timeout (5 s), giving its slot back.
#[test]
fn connections_request_heads_and_silent_clients_are_bounded() {
    let page = start();
    let port = page.port;
    let huge = "x".repeat(9 << 10);
    let a = request(port, "GET", "/", &[("X-Padding", &huge)]);
    assert_eq!(a.status, 431, "{}", a.head);

    // Sixteen connections that never send a request hold every slot.
    let silent: Vec<std::net::TcpStream> = (0..16)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let auth = format!("Bearer {}", page.token);
    let refused = wait_for(LIMIT, || {
        let a = request(port, "GET", "/api/status", &[("Authorization", &auth)]);
        (a.status == 503).then_some(a)
    })
    .expect("a connection beyond the limit is refused");
    assert_eq!(refused.header("retry-after"), Some("1"));

    // The silent ones are closed by the server (end of stream, no answer) ... One of them may
    // have connected before the server let go of the 431 connection's slot: that one was
    // refused at once with the 503 (right too), and at most one can be.
    let started = std::time::Instant::now();
    let mut refused_at_once = 0;
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        let text = String::from_utf8_lossy(&rest);
        if text.starts_with("HTTP/1.1 503") && text.contains("too many connections") {
            refused_at_once += 1;
            continue;
        }
        assert!(rest.is_empty(), "no answer to no request: {text}");
    }
    assert!(
        refused_at_once <= 1,
        "{refused_at_once} silent connections refused"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after the request timeout, not held"
    );
    // ... and their slots come back.
    let back = wait_for(LIMIT, || {
        let a = request(port, "GET", "/api/status", &[("Authorization", &auth)]);
        (a.status == 200).then_some(())
    });
    assert!(back.is_some(), "the slots are given back");
}

/// Off unless configured: no listener, no token file, and `evergreen status --page-url` says so.
#[test]
fn the_page_is_off_unless_configured() {
    let rt = Runtime::start(&group(vec![function("idle", "sleeper")], vec![]));
    let config = rt.path("config.json");
    let out = wait_for(LIMIT, || {
        let out = evergreen_with(&config, &["status", "--page-url"]);
        // Until the control socket answers, the error is another one.
        output_text(&out)
            .contains("the status page is off")
            .then_some(out)
    })
    .expect("evergreen status --page-url answers");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(out.stdout.is_empty());
    assert!(!rt.dir.path().join("root/status-page.token").exists());
    let log = read(&rt.log_path("system/runtime.log"));
    assert!(!log.contains("status page on http://"), "{log}");
}
