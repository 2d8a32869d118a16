//! Dynamic batching (Triton's `dynamic_batching`): concurrent requests run together, each gets exactly the answer
//! it would get alone, and `/v2/models/{model}/stats` shows the executions.

use std::fs;
use std::future::Future;
use std::path::Path;

use serde_json::{Value, json};
use sluice_runtime::ModelFormat;
use sluice_runtime::infer::InferenceJob;
use sluice_runtime::model::LoadOptions;
use sluice_runtime::pool::{InferencePool, PoolConfig};
use sluice_runtime::tensor::{NamedTensor, TensorData};

use crate::support::{TestServer, assert_json_close, example, load, read_json};

const MAX_BATCH: usize = 8;

/// testdata's lr20 model with a batching config: X is [batch, 20], label [batch, 1] (reshaped from the graph's
/// [batch]), probabilities [batch, 3].
fn batching_repo(dynamic_batching: &str, max_batch_size: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("lr/1")).expect("mkdir");
    fs::copy(example("testdata/models/lr20/model_repository/lr/1/model.onnx"), dir.path().join("lr/1/model.onnx"))
        .expect("copy model");
    let config = format!(
        r#"name: "lr"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ 20 ] }} ]
output [
  {{ name: "label", data_type: TYPE_INT64, dims: [ 1 ], reshape: {{ shape: [ ] }} }},
  {{ name: "probabilities", data_type: TYPE_FP32, dims: [ 3 ] }}
]
{dynamic_batching}
"#
    );
    fs::write(dir.path().join("lr/config.pbtxt"), config).expect("write config");
    dir
}

/// Row `i` of the test data: testdata's request row, scaled and shifted so that every row differs.
fn row(i: usize) -> Vec<f32> {
    let base = read_json("testdata/models/lr20/v2_X.json");
    let data = base["inputs"][0]["data"].as_array().expect("data").clone();
    data.iter()
        .enumerate()
        .map(|(j, v)| v.as_f64().expect("number") as f32 * (1.0 + 0.07 * i as f32) - 0.3 * ((i + j) % 5) as f32)
        .collect()
}

fn request(rows: &[usize], outputs: Option<&[&str]>) -> Value {
    let data: Vec<f32> = rows.iter().flat_map(|i| row(*i)).collect();
    let mut body = json!({ "inputs": [{ "name": "X", "shape": [rows.len(), 20], "datatype": "FP32", "data": data }] });
    if let Some(names) = outputs {
        body["outputs"] = names.iter().map(|n| json!({ "name": n })).collect();
    }
    body
}

fn output<'a>(response: &'a Value, name: &str) -> &'a Value {
    response["outputs"].as_array().expect("outputs").iter().find(|o| o["name"] == name).expect("output present")
}

#[tokio::test]
async fn concurrent_requests_run_as_batches_with_the_answers_they_get_alone() {
    // The plain model (no batching) gives the reference answers, one request per row.
    let plain = TestServer::start(ModelFormat::Triton, "testdata/models/lr20/model_repository").await;
    let mut expected = Vec::new();
    for i in 0..40 {
        let (status, body) = plain.post_json("/v2/models/lr/infer", &request(&[i], None)).await;
        assert_eq!(status, 200, "{body}");
        expected.push((output(&body, "label")["data"][0].clone(), output(&body, "probabilities")["data"].clone()));
    }
    plain.stop().await;

    // A long delay makes the worker wait for the requests sent together, so batches form on any machine.
    let repo = batching_repo("dynamic_batching { max_queue_delay_microseconds: 300000 }", MAX_BATCH);
    let server = TestServer::start(ModelFormat::Triton, repo.path().to_str().expect("utf-8 path")).await;
    // 24 requests at once: one and two rows, some asking for the label only (those batch only with each other).
    let mut plan: Vec<(Vec<usize>, Option<&[&str]>)> = Vec::new();
    let mut next = 0;
    for k in 0..24 {
        let rows: Vec<usize> = if k % 3 == 0 { vec![next, next + 1] } else { vec![next] };
        next += rows.len();
        plan.push((rows, if k % 4 == 1 { Some(&["label"][..]) } else { None }));
    }
    let client = &server.client;
    let url = server.url("/v2/models/lr/infer");
    let answers = futures_util::future::join_all(plan.iter().map(|(rows, outputs)| {
        let body = request(rows, *outputs);
        let url = url.clone();
        async move {
            let response = client.post(url).json(&body).send().await.expect("POST");
            crate::support::decode(response).await
        }
    }))
    .await;
    for ((rows, outputs), (status, body)) in plan.iter().zip(&answers) {
        assert_eq!(status, &200, "{body}");
        let label = output(body, "label");
        assert_eq!(label["shape"], json!([rows.len(), 1]), "{body}");
        let labels: Vec<Value> = rows.iter().map(|i| expected[*i].0.clone()).collect();
        assert_eq!(label["data"], json!(labels), "rows {rows:?}");
        if outputs.is_some() {
            assert_eq!(body["outputs"].as_array().map(Vec::len), Some(1), "only the label was asked for: {body}");
        } else {
            let probabilities = output(body, "probabilities");
            assert_eq!(probabilities["shape"], json!([rows.len(), 3]));
            let wanted: Vec<Value> =
                rows.iter().flat_map(|i| expected[*i].1.as_array().expect("probabilities").clone()).collect();
            assert_json_close(&probabilities["data"], &json!(wanted), &format!("rows {rows:?}"));
        }
    }

    // Triton's statistics: every row counted once, fewer executions than requests, no batch above the maximum.
    let (status, stats) = server.get("/v2/models/lr/stats").await;
    assert_eq!(status, 200, "{stats}");
    let model = &stats["model_stats"][0];
    assert_eq!(model["name"], "lr");
    assert_eq!(model["inference_count"], json!(next), "{stats}");
    assert_eq!(model["inference_stats"]["success"]["count"], json!(plan.len()), "{stats}");
    assert_eq!(model["inference_stats"]["fail"]["count"], json!(0));
    let executions = model["execution_count"].as_u64().expect("execution_count");
    assert!(executions < plan.len() as u64, "24 concurrent requests ran in {executions} executions: {stats}");
    let mut rows_in_batches = 0;
    let mut batch_executions = 0;
    for entry in model["batch_stats"].as_array().expect("batch_stats") {
        let size = entry["batch_size"].as_u64().expect("batch_size");
        let count = entry["compute_infer"]["count"].as_u64().expect("count");
        assert!((1..=MAX_BATCH as u64).contains(&size), "batch of {size} rows: {stats}");
        rows_in_batches += size * count;
        batch_executions += count;
    }
    assert_eq!(rows_in_batches, next as u64, "{stats}");
    assert_eq!(batch_executions, executions);
    assert!(model["batch_stats"].as_array().unwrap().iter().any(|e| e["batch_size"].as_u64() > Some(2)), "{stats}");

    // A request above max_batch_size is refused whole; the server's list of extensions names statistics.
    let rows: Vec<usize> = (0..=MAX_BATCH).collect();
    let (status, body) = server.post_json("/v2/models/lr/infer", &request(&rows, None)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("accepts 1 to 8"), "{body}");
    let (_, all) = server.get("/v2/models/stats").await;
    assert_eq!(all["model_stats"][0]["name"], "lr");
    let (status, _) = server.get("/v2/models/nope/stats").await;
    assert_eq!(status, 404);
    let (_, meta) = server.get("/v2").await;
    assert!(meta["extensions"].as_array().unwrap().contains(&json!("statistics")), "{meta}");
    server.stop().await;
}

/// The lr model of `repo`, in a pool of one worker.
fn pool_for(repo: &Path) -> (InferencePool, std::sync::Arc<sluice_runtime::model::LoadedModel>) {
    let models = load(ModelFormat::Triton, repo, &LoadOptions::default()).expect("load");
    let model = std::sync::Arc::clone(models.get("lr").expect("lr"));
    // A generous bound, so that the test does not depend on this machine's speed (the default is 100 µs).
    let config = PoolConfig { threads: 1, queue_capacity: 4, inline_max_compute: std::time::Duration::from_secs(1) };
    (InferencePool::new(config).expect("pool"), model)
}

/// A one-row job: row `i` of the test data.
fn one_row(i: usize) -> InferenceJob {
    let input = NamedTensor { name: "X".into(), shape: vec![1, 20], data: TensorData::Fp32(row(i)) };
    InferenceJob { inputs: vec![input], outputs: vec![] }
}

/// The lr model of `repo` in a pool of one worker, and `n` one-row jobs submitted one after the other.
async fn submit_alone(repo: &Path, n: usize) -> (InferencePool, Vec<Vec<NamedTensor>>) {
    let (pool, model) = pool_for(repo);
    let mut answers = Vec::new();
    for i in 0..n {
        answers.push(pool.submit(std::sync::Arc::clone(&model), one_row(i)).await.expect("inference"));
    }
    (pool, answers)
}

fn label(outputs: &[NamedTensor]) -> Option<TensorData> {
    outputs.iter().find(|o| o.name == "label").map(|o| o.data.clone())
}

#[tokio::test]
async fn a_quick_model_alone_runs_inline_with_the_answers_the_workers_give() {
    // The first two requests go to the worker (the first execution is a warm-up, the second tells the model's
    // speed); from then on a request that finds the pool idle runs on the calling thread.
    let (pool, answers) = submit_alone(&example("testdata/models/lr20/model_repository"), 12).await;
    assert_eq!(pool.inline_runs(), 10);
    // A batching model with no queue delay too (each request alone is a batch of one).
    let repo = batching_repo("dynamic_batching { }", MAX_BATCH);
    let (no_delay_pool, no_delay) = submit_alone(repo.path(), 12).await;
    assert_eq!(no_delay_pool.inline_runs(), 10);
    // The same answers as the worker threads give: a model with a queue delay never runs inline (its requests
    // wait for others in a worker).
    let repo = batching_repo("dynamic_batching { max_queue_delay_microseconds: 100 }", MAX_BATCH);
    let (delay_pool, reference) = submit_alone(repo.path(), 12).await;
    assert_eq!(delay_pool.inline_runs(), 0, "a queue delay is waited in a worker");
    for (i, ((a, b), c)) in answers.iter().zip(&no_delay).zip(&reference).enumerate() {
        assert!(label(c).is_some(), "row {i}: {c:?}");
        assert_eq!(label(a), label(c), "row {i}");
        assert_eq!(label(b), label(c), "row {i}");
    }
    for pool in [pool, no_delay_pool, delay_pool] {
        pool.shutdown();
    }
}

#[tokio::test]
async fn requests_that_arrive_together_run_inline_as_one_batch() {
    let repo = batching_repo("dynamic_batching { }", MAX_BATCH);
    let (pool, model) = pool_for(repo.path());
    let mut expected = Vec::new();
    for i in 0..2 * MAX_BATCH {
        expected.push(label(&pool.submit(std::sync::Arc::clone(&model), one_row(i)).await.expect("inference")));
    }
    let together = |n: usize| {
        futures_util::future::join_all((0..n).map(|i| pool.submit(std::sync::Arc::clone(&model), one_row(i))))
    };
    let full = |s: &sluice_runtime::model::StatsSnapshot| s.batch_stats.get(&(MAX_BATCH as u64)).map_or(0, |d| d.count);

    // The largest batch, all submitted before any runs: the first opens a batch and yields, the others join it.
    let (inline, stats) = (pool.inline_runs(), model.stats.snapshot());
    for (i, answer) in together(MAX_BATCH).await.iter().enumerate() {
        assert_eq!(label(answer.as_ref().expect("inference")), expected[i], "row {i}");
    }
    let after = model.stats.snapshot();
    assert_eq!(pool.inline_runs() - inline, MAX_BATCH as u64, "all ran inline");
    assert_eq!(after.execution_count - stats.execution_count, 1, "in one execution: {:?}", after.batch_stats);
    assert_eq!(full(&after) - full(&stats), 1, "of {MAX_BATCH} rows: {:?}", after.batch_stats);

    // One more than fits: it goes to the worker.
    let inline = pool.inline_runs();
    for (i, answer) in together(MAX_BATCH + 1).await.iter().enumerate() {
        assert_eq!(label(answer.as_ref().expect("inference")), expected[i], "row {i}");
    }
    assert_eq!(pool.inline_runs() - inline, MAX_BATCH as u64);

    // The request that opened a batch is given up while it yields: the one that joined goes to the worker and is
    // answered.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut opener = Box::pin(pool.submit(std::sync::Arc::clone(&model), one_row(0)));
    let mut joiner = Box::pin(pool.submit(std::sync::Arc::clone(&model), one_row(1)));
    assert!(opener.as_mut().poll(&mut cx).is_pending());
    assert!(joiner.as_mut().poll(&mut cx).is_pending());
    drop(opener);
    let inline = pool.inline_runs();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(60), joiner).await.expect("answered");
    assert_eq!(label(&answer.expect("inference")), expected[1]);
    assert_eq!(pool.inline_runs(), inline, "the worker answered it");
    pool.shutdown();
}

fn load_error(dir: &Path) -> String {
    match load(ModelFormat::Triton, dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn batching_configs_that_cannot_work_are_refused_at_load() {
    let repo = batching_repo("dynamic_batching { }", 0);
    // With max_batch_size 0 the dims are the full shape: make them valid so only batching is wrong.
    let config = repo.path().join("lr/config.pbtxt");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("dims: [ 20 ]", "dims: [ -1, 20 ]")
        .replace("dims: [ 1 ], reshape: { shape: [ ] }", "dims: [ -1 ]")
        .replace("dims: [ 3 ]", "dims: [ -1, 3 ]");
    fs::write(&config, text).unwrap();
    let e = load_error(repo.path());
    assert!(e.contains("dynamic_batching needs max_batch_size > 0"), "{e}");

    let repo = batching_repo("dynamic_batching { preferred_batch_size: [ 4, 16 ] }", MAX_BATCH);
    let e = load_error(repo.path());
    assert!(e.contains("preferred_batch_size 16 must be between 1 and max_batch_size (8)"), "{e}");

    let repo = batching_repo("dynamic_batching { max_queue_delay_microseconds: 60000000 }", MAX_BATCH);
    let e = load_error(repo.path());
    assert!(e.contains("max_queue_delay_microseconds 60000000 is above the limit"), "{e}");

    let repo = batching_repo(
        "dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }",
        MAX_BATCH,
    );
    assert!(load(ModelFormat::Triton, repo.path(), &LoadOptions::default()).is_ok());
}
