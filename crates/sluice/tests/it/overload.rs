//! Request settings with teeth: a deployment takes `max_concurrent_requests_per_instance`
//! requests per ready replica; the rest wait at most `max_queue_wait_ms` in the gateway, and what
//! cannot be served in time is refused at once with 429 and `Retry-After`, never left to time out.

use crate::harness::{Server, primary_key, test_python};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_beyond_capacity_gets_429_at_once_and_accepted_requests_keep_their_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let python = test_python();
    let server = Server::start_on(&tmp.path().join("data"), &["--python", python.to_str().unwrap()]);
    std::fs::create_dir_all(tmp.path().join("code")).unwrap();
    // 50 ms per request, one at a time: about 20 requests per second.
    std::fs::write(
        tmp.path().join("code/score.py"),
        "import time\n\ndef init():\n    pass\n\ndef run(raw):\n    time.sleep(0.05)\n    return 'ok'\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("ep.yml"), "name: busy-ep\nauth_mode: key\n").unwrap();
    std::fs::write(
        tmp.path().join("dep.yml"),
        "name: blue\nendpoint_name: busy-ep\nmodel:\n  path: code\ncode_configuration:\n  code: code\n  scoring_script: score.py\n\
         instance_type: cpu=1,memory=1Gi\nenvironment_variables:\n  WORKER_COUNT: 1\nrequest_settings:\n  request_timeout_ms: 2000\n  \
         max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 200\n",
    )
    .unwrap();
    server.cli_ok(&["online-endpoint", "create", "--file", tmp.path().join("ep.yml").to_str().unwrap()]);
    server.cli_ok(&[
        "online-deployment",
        "create",
        "--file",
        tmp.path().join("dep.yml").to_str().unwrap(),
        "--all-traffic",
    ]);
    let key = primary_key(&server, "busy-ep");
    let url = format!("{}/endpoints/busy-ep/score", server.url);

    // 20 clients for 60 s: several times what one 50 ms slot serves. The server's memory is
    // read once the load is on and again at the end: it must stay flat.
    let client = reqwest::Client::new();
    let stop_at = Instant::now() + Duration::from_secs(60);
    let rss_early = {
        let server_pid = server.pid();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            rss_kib(server_pid)
        })
    };
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while Instant::now() < stop_at {
                    let started = Instant::now();
                    let resp = client.post(&url).bearer_auth(&key).body("{}").send().await.unwrap();
                    let status = resp.status().as_u16();
                    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                    let body = resp.text().await.unwrap();
                    seen.push((status, started.elapsed(), retry_after, body));
                    if status == 429 {
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let (early, late) = (rss_early.await.unwrap(), rss_kib(server.pid()));
    assert!(late < early + 20 * 1024, "server memory grew from {early} KiB to {late} KiB under overload");
    let ok: Vec<_> = all.iter().filter(|r| r.0 == 200).collect();
    let refused: Vec<_> = all.iter().filter(|r| r.0 == 429).collect();
    let other: Vec<_> = all.iter().filter(|r| r.0 != 200 && r.0 != 429).collect();
    assert!(other.is_empty(), "only 200 and 429 expected: {:?}", &other[..other.len().min(3)]);
    assert!(ok.len() >= 200, "the deployment kept serving: {} ok", ok.len());
    assert!(!refused.is_empty(), "load beyond capacity was refused");
    for r in &refused {
        assert_eq!(r.2.as_deref(), Some("1"), "429 carries Retry-After");
        assert!(r.3.contains("max_queue_wait_ms (200 ms)"), "{}", r.3);
        // Refused at once or at the latest when the queue wait ran out (plus scheduling slack).
        assert!(r.1 < Duration::from_millis(200 + 800), "a 429 took {:?}", r.1);
    }
    // An accepted request waited at most max_queue_wait_ms, then ran within request_timeout_ms.
    let slowest = ok.iter().map(|r| r.1).max().unwrap();
    assert!(slowest < Duration::from_millis(200 + 2000), "slowest accepted request took {slowest:?}");

    // `show` counts the refusals apart from the requests that reached a replica.
    let shown: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["online-endpoint", "show", "--name", "busy-ep"])).unwrap();
    let stats = &shown["deployment_stats"]["blue"];
    assert_eq!(stats["refused"].as_u64(), Some(refused.len() as u64), "{shown}");
    assert_eq!(stats["requests"].as_u64(), Some(ok.len() as u64), "{shown}");

    // `/metrics`, read by Prometheus's own parser, agrees with what the clients saw.
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    let samples = prometheus_samples(&text);
    let value = |name: &str, code: Option<&str>| -> f64 {
        samples
            .iter()
            .find(|s| {
                s["name"] == name
                    && s["labels"]["endpoint"] == "busy-ep"
                    && s["labels"]["deployment"] == "blue"
                    && code.is_none_or(|c| s["labels"]["code"] == c)
            })
            .unwrap_or_else(|| panic!("{name} {code:?} missing from /metrics:\n{text}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("sluice_requests_total", Some("200")), ok.len() as f64);
    assert_eq!(value("sluice_requests_total", Some("429")), refused.len() as f64);
    assert_eq!(value("sluice_requests_refused_total", None), refused.len() as f64);
    assert_eq!(value("sluice_request_duration_seconds_count", None), all.len() as f64);
    assert_eq!(value("sluice_request_replica_seconds_count", None), ok.len() as f64);
    assert_eq!(value("sluice_replicas_ready", None), 1.0);
    assert_eq!(value("sluice_requests_queued", None), 0.0);
    assert!(value("sluice_request_queue_wait_seconds_sum", None) > 0.0, "some requests waited");
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Every sample of a Prometheus text exposition, parsed by the `prometheus_client` package (the
/// parser fails on anything Prometheus would reject).
pub fn prometheus_samples(text: &str) -> Vec<serde_json::Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let script = "import json, sys\nfrom prometheus_client.parser import text_string_to_metric_families\n\
        out = [dict(name=s.name, labels=s.labels, value=s.value) for f in text_string_to_metric_families(open(sys.argv[1]).read()) for s in f.samples]\n\
        print(json.dumps(out))";
    let out = std::process::Command::new(test_python()).args(["-c", script]).arg(file.path()).output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
