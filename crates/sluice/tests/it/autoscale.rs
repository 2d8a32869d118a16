//! Autoscaling (`scale_settings: {type: target_utilization}`): replicas follow measured
//! concurrency without flapping, and `min_instances: 0` scales an idle deployment to zero and
//! back on the first requests, which are held (not failed) while a replica starts.

use crate::harness::{Server, pids_in, pids_matching, primary_key, register_iris, repo};
use std::time::{Duration, Instant};

fn deploy(server: &Server, dir: &std::path::Path, scale: &str) {
    register_iris(server);
    server.cli_ok(&["online-endpoint", "create", "--file", "examples/iris/endpoint.yml"]);
    let file = dir.join("autoscaled.yml");
    std::fs::write(
        &file,
        format!(
            "name: blue\nendpoint_name: iris-ep\nmodel: azureml:iris:1\ninstance_type: cpu=1,memory=1Gi\ninstance_count: 1\n\
             request_settings:\n  max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 2000\nscale_settings:\n{scale}"
        ),
    )
    .unwrap();
    server.cli_ok(&["online-deployment", "create", "--file", file.to_str().unwrap(), "--all-traffic"]);
}

fn replicas(server: &Server) -> usize {
    pids_matching(server, " replica ").len()
}

/// Polls until `cond` holds (returning true) or `limit` passes (false).
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_deployment_scales_to_zero_and_its_next_requests_all_succeed() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    deploy(
        &server,
        tmp.path(),
        "  type: target_utilization\n  min_instances: 0\n  max_instances: 2\n  polling_interval: 1\n  stabilization_window: 2\n",
    );
    assert_eq!(replicas(&server), 1);
    assert!(eventually(Duration::from_secs(60), || replicas(&server) == 0).await, "idle deployment went to zero");

    // 20 concurrent requests find no replica: they are held while one starts, and all succeed.
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);
    let client = reqwest::Client::new();
    let sends: Vec<_> = (0..20)
        .map(|_| {
            let req = client.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body.clone());
            tokio::spawn(req.send())
        })
        .collect();
    let mut statuses = Vec::new();
    for s in sends {
        statuses.push(s.await.unwrap().unwrap().status().as_u16());
    }
    assert_eq!(statuses, vec![200; 20]);
    assert!(replicas(&server) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_load_up_and_back_down_without_flapping() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    deploy(
        &server,
        tmp.path(),
        "  type: target_utilization\n  min_instances: 1\n  max_instances: 3\n  polling_interval: 1\n  stabilization_window: 3\n",
    );
    let key = primary_key(&server, "iris-ep");
    let body = std::fs::read(repo().join("examples/iris/request.json")).unwrap();
    let url = format!("{}/endpoints/iris-ep/v2/models/iris/infer", server.url);

    // Sample the replica count every 200 ms through the whole run.
    let counts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let (counts, data_dir) = (counts.clone(), server.data_dir.clone());
        tokio::spawn(async move {
            loop {
                counts.lock().unwrap().push(pids_in(&data_dir, " replica ").len());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // Ramp from 1 to 50 clients over a few seconds, hold, then stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut clients = Vec::new();
    for i in 0..50 {
        let (client, url, key, body, stop) = (client.clone(), url.clone(), key.clone(), body.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if !r.is_ok_and(|r| r.status().is_success()) {
                    failures += 1;
                }
            }
            failures
        }));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let scaled_up = eventually(Duration::from_secs(20), || replicas(&server) == 3).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = 0;
    for c in clients {
        failures += c.await.unwrap();
    }
    assert!(scaled_up, "50 clients on 1-concurrency replicas scale to max_instances");
    assert!(
        eventually(Duration::from_secs(30), || replicas(&server) == 1).await,
        "back to min_instances after the load"
    );
    sampler.abort();
    assert_eq!(failures, 0, "no request failed while replicas came and went");

    // No flapping: the count only rose, then only fell.
    let counts = counts.lock().unwrap().clone();
    let peak = counts.iter().position(|c| *c == 3).expect("reached 3");
    assert!(counts[..peak].windows(2).all(|w| w[0] <= w[1]), "rose monotonically: {counts:?}");
    assert!(counts[peak..].windows(2).all(|w| w[0] >= w[1]), "fell monotonically: {counts:?}");
}
