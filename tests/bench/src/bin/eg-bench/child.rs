//! `eg-bench`'s two child modes, `sender` and `receiver`: the function processes it runs
//! through evergreen and, for the baseline, on a bare pipe.

use super::histogram::Histogram;
use super::*;

// ---------------------------------------------------------------------------------------------
// Child modes
// ---------------------------------------------------------------------------------------------

/// `sender <sdk|raw> <size> <count> <rate> <max_ms> <dir>` or
/// `receiver <size> <count> <rate> <max_ms> <dir>`.
pub(crate) fn child_main(words: &[&str]) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eg-bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match words {
            ["sender", transport, job @ .., dir] => {
                let raw = match *transport {
                    "sdk" => false,
                    "raw" => true,
                    other => return Err(format!("unknown transport {other}").into()),
                };
                sender(raw, Job::parse(job)?, Files { dir: dir.into() }).await
            }
            ["receiver", job @ .., dir] => {
                receiver(Job::parse(job)?, Files { dir: dir.into() }).await
            }
            _ => Err(format!("bad child arguments {words:?}").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "eg-bench {}: {e}",
                words.first().copied().unwrap_or("child")
            );
            ExitCode::FAILURE
        }
    }
}

/// Polls (bounded) for `path`, without blocking the runtime's other tasks.
async fn wait_file(path: &Path, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

fn payload(size: usize, seq: u64, kind: u64, extra: u64) -> Vec<u8> {
    let mut p = vec![0xab; size.max(HEADER)];
    p[0..8].copy_from_slice(&mono_ns().to_le_bytes());
    p[8..16].copy_from_slice(&seq.to_le_bytes());
    p[16..24].copy_from_slice(&kind.to_le_bytes());
    p[24..32].copy_from_slice(&extra.to_le_bytes());
    p
}

fn header(p: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let word =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(p.get(i..i + 8)?.try_into().ok()?)) };
    Some((word(0)?, word(8)?, word(16)?, word(24)?))
}

/// The sender's way out: the SDK (under evergreen), or playing the
/// supervisor on a raw pipe (baseline).
enum Out {
    Sdk(Handle),
    Raw(SupervisorLink<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>),
}

impl Out {
    async fn send(&mut self, payload: Vec<u8>) -> Result<(), BoxError> {
        match self {
            Out::Sdk(handle) => handle.publish(TOPIC, payload).await?,
            Out::Raw(link) => {
                link.deliver(Delivery {
                    topic: TOPIC.into(),
                    payload,
                    source: fn_arn(SENDER),
                })
                .await?
            }
        }
        Ok(())
    }

    /// The SDK flushes by itself once its queue is empty.
    async fn flush(&mut self) -> Result<(), BoxError> {
        if let Out::Raw(link) = self {
            link.flush().await?;
        }
        Ok(())
    }
}

fn baseline_config() -> ComponentConfig {
    ComponentConfig {
        arn: fn_arn(RECEIVER),
        kind: ComponentKind::Function,
        id: RECEIVER.into(),
        parameters: Default::default(),
        resources: Default::default(),
        secrets: vec![],
        log_level: LogLevel::Info,
        core_thing_name: "bench-core".into(),
        region: REGION.into(),
        endpoints: Default::default(),
    }
}

async fn sender(raw: bool, job: Job, files: Files) -> Result<(), BoxError> {
    let mut component = None;
    let mut out = if raw {
        let mut link = SupervisorLink::new(evergreen_ipc::pipe::stdout()?, DEFAULT_MAX_FRAME);
        link.start(&baseline_config()).await?;
        Out::Raw(link)
    } else {
        let mut c = Component::connect().await?;
        c.ready().await?;
        let handle = c.handle();
        component = Some(c);
        Out::Sdk(handle)
    };
    std::fs::write(files.ready("sender"), b"")?;
    if !wait_file(&files.go(), GO_LIMIT).await {
        return Err("no go signal from the driver".into());
    }

    let start = Instant::now();
    let mut sent = 0u64;
    match job.pattern {
        Pattern::Flood => {
            while sent < job.count {
                if sent.is_multiple_of(1024) && start.elapsed() >= job.max {
                    break;
                }
                out.send(payload(job.size, sent, KIND_DATA, 0)).await?;
                sent += 1;
                if sent.is_multiple_of(BASELINE_BATCH) {
                    out.flush().await?;
                }
            }
        }
        Pattern::Paced { rate } => {
            let t0 = tokio::time::Instant::now();
            loop {
                let elapsed = t0.elapsed();
                if sent >= job.count || elapsed >= job.max {
                    break;
                }
                // Everything due by now (one per tick at 1 kHz; a few per
                // tick at higher rates), then sleep until the next one is due.
                let due = ((elapsed.as_secs_f64() * rate as f64) as u64 + 1).min(job.count);
                while sent < due {
                    out.send(payload(job.size, sent, KIND_DATA, 0)).await?;
                    sent += 1;
                }
                out.flush().await?;
                let next = t0 + Duration::from_secs_f64(sent as f64 / rate as f64);
                tokio::time::sleep_until(next).await;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    out.flush().await?;

    // End markers until the receiver has reported (bounded).
    let mut end_markers = 0;
    while end_markers < END_MARKERS && !files.result("receiver").exists() {
        out.send(payload(job.size, sent, KIND_END, sent)).await?;
        out.flush().await?;
        end_markers += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_json(
        &files.result("sender"),
        &SenderReport {
            sent,
            elapsed_s: elapsed,
            rate: if elapsed > 0.0 {
                sent as f64 / elapsed
            } else {
                0.0
            },
            end_markers,
        },
    )?;
    // A pinned function idles until told to stop; the baseline sender waits
    // (bounded) until the driver has read its RSS, then exits, which closes
    // the pipe and ends the receiver.
    if component.is_none() {
        wait_file(&files.stop(), Duration::from_secs(30)).await;
    }
    if let Some(mut c) = component {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, c.next_event()).await {
            if matches!(event, Event::Shutdown { .. }) {
                break;
            }
        }
    }
    Ok(())
}

async fn receiver(job: Job, files: Files) -> Result<(), BoxError> {
    // In both runs the receiver is a plain SDK component: under evergreen the
    // supervisor greets it, in the baseline the raw sender does.
    let mut component = Component::connect().await?;
    component.ready().await?;
    std::fs::write(files.ready("receiver"), b"")?;

    let deadline = tokio::time::Instant::now() + GO_LIMIT + job.max + Duration::from_secs(15);
    let mut hist = Histogram::new();
    let mut report = ReceiverReport::default();
    let mut next_seq = 0u64;
    let mut last_arrival = None::<tokio::time::Instant>;
    report.ended_by = "deadline".into();
    loop {
        let limit = match last_arrival {
            Some(t) => (t + IDLE_LIMIT).min(deadline),
            None => deadline,
        };
        let event = match tokio::time::timeout_at(limit, component.next_event()).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                report.ended_by = "link closed".into();
                break;
            }
            Err(_) => {
                if last_arrival.is_some() && tokio::time::Instant::now() < deadline {
                    report.ended_by = "idle".into();
                }
                break;
            }
        };
        let m = match event {
            Event::Message(m) => m,
            Event::Shutdown { .. } => {
                report.ended_by = "shutdown".into();
                break;
            }
            // Only a component that serves a function name gets invokes.
            Event::Invoke(_) => continue,
            Event::Refused { .. } => continue,
        };
        let now = mono_ns();
        let Some((sent_ns, seq, kind, extra)) = header(&m.payload) else {
            continue;
        };
        if kind == KIND_END {
            report.sent = Some(extra);
            report.ended_by = "end marker".into();
            break;
        }
        last_arrival = Some(tokio::time::Instant::now());
        if report.received == 0 {
            report.first_ns = now;
        }
        report.last_ns = now;
        report.received += 1;
        report.bytes += m.payload.len() as u64;
        if seq < next_seq {
            report.out_of_order += 1;
        } else if seq > next_seq {
            report.gaps += 1;
            report.max_gap = report.max_gap.max(seq - next_seq);
        }
        next_seq = seq + 1;
        hist.record(now.saturating_sub(sent_ns));
    }
    let span = report.last_ns.saturating_sub(report.first_ns) as f64 / 1e9;
    report.rate = if span > 0.0 {
        (report.received.saturating_sub(1)) as f64 / span
    } else {
        0.0
    };
    report.latency_ns = hist.percentiles();
    write_json(&files.result("receiver"), &report)?;

    // Keep draining until stopped (pinned) or the pipe closes (baseline).
    let stop = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Ok(Some(event)) = tokio::time::timeout_at(stop, component.next_event()).await {
        if matches!(event, Event::Shutdown { .. }) {
            break;
        }
    }
    Ok(())
}
