//! `sluice-loadgen`: an open-loop load generator for the benchmark (bench/run.sh).
//!
//! wrk is closed-loop: a slow answer delays the next request, so a server under strain is offered less load and
//! its latency looks better than a user would see ("coordinated omission"). This sends requests on a fixed
//! schedule (request `i` at `start + i / rate`) over a pool of keep-alive HTTP/1.1 connections, whether or not
//! earlier answers have come back, and measures each latency from the request's scheduled time, as wrk2 does. No
//! Debian package ships wrk2, and it has no maintained crate equivalent, hence this small binary.
//!
//! It runs on one thread (pin it with taskset). The dispatcher yields instead of sleeping when the next send is
//! due within a millisecond (tokio's timer has millisecond granularity), so it keeps its core busy: give it a
//! core of its own. The result is one JSON line on stdout.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[derive(Parser, Debug)]
#[command(about = "Open-loop HTTP POST load at a fixed rate; latency from each request's scheduled time")]
struct Args {
    /// The URL to POST to (http://host:port/path).
    #[arg(long)]
    url: String,
    /// A file holding the request body.
    #[arg(long)]
    body: std::path::PathBuf,
    /// Extra request headers, "Name: value" (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of load before the measured window (not recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections (the most requests in flight at once).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// A substring every 200 answer must contain (checked on every response).
    #[arg(long, default_value = "")]
    expect: String,
    /// Also report the measured window as a series of windows of this many milliseconds (by each
    /// request's scheduled time): requests answered and the worst latency in each, to see when a
    /// backlog began. 0: no series.
    #[arg(long, default_value_t = 0)]
    series_ms: u64,
}

struct Target {
    authority: String,
    path: String,
    host_port: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    let host_port = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    Ok(Target { authority: authority.to_owned(), path: path.to_owned(), host_port })
}

/// What the connection tasks share: the scheduled send times waiting for a free connection, and the results.
#[derive(Default)]
struct Shared {
    due: VecDeque<Instant>,
    latencies_us: Vec<u64>,
    ok: u64,
    errors: u64,
    unexpected: u64,
    first_error: Option<String>,
    done: bool,
    /// Per `--series-ms` window: answers (of any kind) and the worst latency in µs.
    series: Vec<(u64, u64)>,
}

struct Config {
    target: Target,
    headers: Vec<(String, String)>,
    content_type: String,
    body: Bytes,
    expect: String,
    measure_from: Instant,
    series_ms: u64,
}

async fn connect(host_port: &str) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(host_port).await.map_err(|e| format!("connect {host_port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn one_request(sender: &mut http1::SendRequest<Full<Bytes>>, config: &Config) -> Result<(u16, Bytes), String> {
    let mut request = Request::post(config.target.path.as_str())
        .header(hyper::header::HOST, config.target.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, config.content_type.as_str());
    for (name, value) in &config.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Full::new(config.body.clone())).map_err(|e| format!("request: {e}"))?;
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| format!("send: {e}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok((status, body))
}

async fn connection_task(shared: Rc<RefCell<Shared>>, wake: Rc<Notify>, config: Rc<Config>) {
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    loop {
        let scheduled = loop {
            let next = {
                let mut s = shared.borrow_mut();
                if s.done && s.due.is_empty() {
                    return;
                }
                s.due.pop_front()
            };
            match next {
                Some(t) => break t,
                None => wake.notified().await,
            }
        };
        if sender.is_none() {
            match connect(&config.target.host_port).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    record(&shared, scheduled, &config, Err(e));
                    continue;
                }
            }
        }
        let Some(active) = sender.as_mut() else { continue };
        let result = one_request(active, &config).await;
        if result.is_err() {
            sender = None; // reconnect for the next one
        }
        record(&shared, scheduled, &config, result);
    }
}

fn record(shared: &RefCell<Shared>, scheduled: Instant, config: &Config, result: Result<(u16, Bytes), String>) {
    let latency = scheduled.elapsed();
    let mut s = shared.borrow_mut();
    if scheduled < config.measure_from {
        return;
    }
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    if config.series_ms > 0 {
        let window = (scheduled - config.measure_from).as_millis() / u128::from(config.series_ms);
        let window = usize::try_from(window).unwrap_or(usize::MAX);
        if window < 1 << 20 {
            if s.series.len() <= window {
                s.series.resize(window + 1, (0, 0));
            }
            let slot = &mut s.series[window];
            *slot = (slot.0 + 1, slot.1.max(latency_us));
        }
    }
    match result {
        Ok((200, body)) => {
            if !config.expect.is_empty() && !contains(&body, config.expect.as_bytes()) {
                s.unexpected += 1;
                if s.first_error.is_none() {
                    s.first_error =
                        Some(format!("answer lacks {:?}: {}", config.expect, String::from_utf8_lossy(&body)));
                }
                return;
            }
            s.ok += 1;
            s.latencies_us.push(latency_us);
        }
        Ok((status, body)) => {
            s.errors += 1;
            if s.first_error.is_none() {
                let text = String::from_utf8_lossy(&body);
                s.first_error = Some(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
            }
        }
        Err(e) => {
            s.errors += 1;
            if s.first_error.is_none() {
                s.first_error = Some(e);
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank; the small slack keeps 99.9 % of 1000 at rank 999 despite float rounding (999.0000000000001).
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<String, String> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be a positive number".into());
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.warmup.is_finite() && args.warmup >= 0.0) {
        return Err("--duration must be positive and --warmup non-negative".into());
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    let target = parse_url(&args.url)?;
    let body = std::fs::read(&args.body).map_err(|e| format!("cannot read {}: {e}", args.body.display()))?;
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| format!("--header {h:?} is not \"Name: value\""))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let warmup = Duration::from_secs_f64(args.warmup);
    let measured = Duration::from_secs_f64(args.duration);
    let summary = local.block_on(&runtime, async move {
        let start = Instant::now() + Duration::from_millis(50);
        let config = Rc::new(Config {
            target,
            headers,
            content_type: args.content_type.clone(),
            body: Bytes::from(body),
            expect: args.expect.clone(),
            measure_from: start + warmup,
            series_ms: args.series_ms,
        });
        let shared = Rc::new(RefCell::new(Shared::default()));
        let wake = Rc::new(Notify::new());
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| {
                tokio::task::spawn_local(connection_task(Rc::clone(&shared), Rc::clone(&wake), Rc::clone(&config)))
            })
            .collect();
        let end = start + warmup + measured;
        let mut next = start;
        let mut sent_measured = 0u64;
        let mut max_lag = Duration::ZERO;
        while next < end {
            let now = Instant::now();
            if next <= now {
                if next >= config.measure_from {
                    max_lag = max_lag.max(now - next);
                }
                let mut s = shared.borrow_mut();
                while next <= now && next < end {
                    s.due.push_back(next);
                    if next >= config.measure_from {
                        sent_measured += 1;
                    }
                    next += interval;
                }
                drop(s);
                wake.notify_waiters();
                // Idle connections wait on `notified()`; waking all is cheap at these counts, and those that
                // find the queue empty wait again.
            }
            let until = next.saturating_duration_since(Instant::now());
            if until > Duration::from_millis(2) {
                tokio::time::sleep(until - Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        shared.borrow_mut().done = true;
        wake.notify_waiters();
        // Give the last answers the time a slow server may take; a connection still busy after that is abandoned.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        let elapsed = start.elapsed().saturating_sub(warmup);
        let mut s = shared.borrow_mut();
        let mut latencies = std::mem::take(&mut s.latencies_us);
        latencies.sort_unstable();
        let answered = s.ok + s.errors + s.unexpected;
        let mut summary = serde_json::json!({
            "rate": args.rate,
            "duration_s": args.duration,
            "connections": args.connections,
            "scheduled": sent_measured,
            "ok": s.ok,
            "errors": s.errors,
            "unexpected": s.unexpected,
            "unanswered": sent_measured.saturating_sub(answered),
            "achieved_rps": s.ok as f64 / elapsed.as_secs_f64().max(1e-9),
            "p50_us": percentile(&latencies, 50.0),
            "p90_us": percentile(&latencies, 90.0),
            "p99_us": percentile(&latencies, 99.0),
            "p999_us": percentile(&latencies, 99.9),
            "max_us": latencies.last().copied().unwrap_or(0),
            "max_dispatch_lag_us": u64::try_from(max_lag.as_micros()).unwrap_or(u64::MAX),
            "first_error": s.first_error,
        });
        if args.series_ms > 0 {
            // [start of the window in ms from the measured window's start, answers, worst latency µs]
            let series: Vec<[u64; 3]> =
                s.series.iter().enumerate().map(|(i, (n, max))| [i as u64 * args.series_ms, *n, *max]).collect();
            summary["series_ms"] = args.series_ms.into();
            summary["series"] = serde_json::json!(series);
        }
        summary
    });
    Ok(summary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_percentiles() {
        let t = parse_url("http://127.0.0.1:9100/endpoints/lr-ep/v2/models/lr/infer").unwrap();
        assert_eq!((t.host_port.as_str(), t.path.as_str()), ("127.0.0.1:9100", "/endpoints/lr-ep/v2/models/lr/infer"));
        assert_eq!(parse_url("http://localhost").unwrap().host_port, "localhost:80");
        assert!(parse_url("https://x/").is_err());
        let sorted: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 500);
        assert_eq!(percentile(&sorted, 99.9), 999);
        assert_eq!(percentile(&[], 99.0), 0);
    }

    #[test]
    fn answers_fall_into_the_window_of_their_scheduled_time() {
        let measure_from = Instant::now() - Duration::from_secs(1);
        let config = Config {
            target: parse_url("http://127.0.0.1:9/").unwrap(),
            headers: Vec::new(),
            content_type: String::new(),
            body: Bytes::new(),
            expect: String::new(),
            measure_from,
            series_ms: 100,
        };
        let shared = RefCell::new(Shared::default());
        record(&shared, measure_from + Duration::from_millis(250), &config, Ok((200, Bytes::new())));
        record(&shared, measure_from + Duration::from_millis(290), &config, Err("reset".into()));
        record(&shared, measure_from - Duration::from_millis(10), &config, Ok((200, Bytes::new())));
        let s = shared.borrow();
        assert_eq!(s.series.len(), 3, "windows 0..=2");
        assert_eq!(s.series[..2], [(0, 0), (0, 0)]);
        // Two answers in the 200 ms window; the worst waited about 750 ms past its scheduled time.
        assert_eq!(s.series[2].0, 2);
        assert!((700_000..5_000_000).contains(&s.series[2].1), "{:?}", s.series[2]);
        assert_eq!((s.ok, s.errors), (1, 1), "the warm-up answer is not counted");
    }
}
