//! Batch endpoints with the real server, CLI and Python batch worker: the Azure-style example
//! end to end (its conda environment built), failed files against `error_threshold`, a queue
//! when the worker pool is full, cancel, `kill -9` of the server mid-job, and clear refusals.

use crate::harness::{Server, pids_in, repo, test_python};
use sluice_api::batch::job::BatchJob;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `sluice <args>` that must fail; returns its stderr.
pub(crate) fn cli_err(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "sluice {args:?} should fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    err
}

/// Invokes `endpoint` on `input` through the CLI; returns the job's name.
pub(crate) fn invoke(server: &Server, endpoint: &str, input: &Path, extra: &[&str]) -> String {
    let mut args = vec!["batch-endpoint", "invoke", "--name", endpoint, "--input", input.to_str().unwrap()];
    args.extend_from_slice(extra);
    let job = json(&server.cli_ok(&args));
    assert_eq!(job["type"], "batch", "{job}");
    job["name"].as_str().unwrap().to_owned()
}

/// Polls the job until `done` holds for it (or panics after `limit`).
async fn wait_job(server: &Server, name: &str, limit: Duration, done: impl Fn(&BatchJob) -> bool) -> BatchJob {
    let client = server.client();
    let deadline = Instant::now() + limit;
    loop {
        let job = client.get_job(name).await.expect("job show");
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {name} never got there: {job:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Worker processes of this data directory's batch jobs.
fn batch_workers(data: &Path) -> Vec<u32> {
    pids_in(data, "sluice_worker.batch")
}

async fn no_workers_left(data: &Path) {
    for _ in 0..100 {
        if batch_workers(data).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("batch workers still running: {:?}", batch_workers(data));
}

#[tokio::test]
async fn the_sklearn_example_scores_a_folder_into_the_expected_predictions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let python = test_python();
    let server = Server::start_on(&data, &["--python", python.to_str().unwrap()]);
    let example = repo().join("examples/batch-sklearn");

    let ep = json(&server.cli_ok(&["batch-endpoint", "create", "--file", "examples/batch-sklearn/endpoint.yml"]));
    assert_eq!(ep["scoring_uri"], format!("{}/endpoints/iris-batch/jobs", server.url));
    // The deployment's conda file is built before it is Succeeded; its model comes from `..`.
    let dep = json(&server.cli_ok(&[
        "batch-deployment",
        "create",
        "--file",
        "examples/batch-sklearn/deployment.yml",
        "--set-default",
    ]));
    assert_eq!(dep["provisioning_state"], "Succeeded", "{dep}");
    assert_eq!(dep["model"], "azureml:sklearn-iris:1", "{dep}");
    assert_eq!(dep["effective_settings"]["max_concurrency_per_instance"], 2, "{dep}");
    let ep = json(&server.cli_ok(&["batch-endpoint", "show", "--name", "iris-batch"]));
    assert_eq!(ep["defaults"]["deployment_name"], "iris-sklearn-dpl", "{ep}");
    let envs: Vec<_> = std::fs::read_dir(data.join("envs")).unwrap().filter_map(Result::ok).collect();
    assert_eq!(envs.len(), 1);
    let log = std::fs::read_to_string(envs[0].path().join("build.log")).unwrap();
    assert!(log.contains("pandas==2.3.3") && log.contains("joblib==1.6.0"), "{log}");

    let name = invoke(&server, "iris-batch", &example.join("data"), &[]);
    let out = server.cli(&["job", "stream", "--name", &name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // stream follows the workers' logs (the driver's print()) and a progress bar to the end.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("| run method start:") && err.contains(&format!("[{}] {name}: Completed", "#".repeat(20))),
        "{err}"
    );
    let job = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(job["status"], "Completed", "{job}");
    let p = &job["progress"];
    assert_eq!(
        (&p["total_mini_batches"], &p["completed_mini_batches"], &p["failed_mini_batches"]),
        (&4.into(), &4.into(), &0.into()),
        "{job}"
    );
    assert_eq!((&p["total_files"], &p["succeeded_items"], &p["failed_items"]), (&10.into(), &64.into(), &0.into()));
    assert_eq!(job["partial"], false);

    let dl = tmp.path().join("dl");
    server.cli_ok(&["job", "download", "--name", &name, "--download-path", dl.to_str().unwrap()]);
    let got = std::fs::read(dl.join("named-outputs/score/predictions.csv")).unwrap();
    let want = std::fs::read(example.join("expected-predictions.csv")).unwrap();
    assert!(got == want, "predictions.csv differs:\n{}", String::from_utf8_lossy(&got));
    let listed = server.cli_ok(&["batch-endpoint", "list-jobs", "--name", "iris-batch", "-o", "table"]);
    assert!(listed.contains(&name) && listed.contains("Completed"), "{listed}");

    // The same folder as a registered data asset, named by the job and pinned to its version.
    let yml = tmp.path().join("iris-rows.yml");
    let rows = example.join("data");
    std::fs::write(&yml, format!("name: iris-rows\nversion: 1\ntype: uri_folder\npath: {}\n", rows.display())).unwrap();
    let asset = json(&server.cli_ok(&["data", "create", "--file", yml.to_str().unwrap()]));
    assert_eq!((&asset["id"], &asset["type"]), (&"azureml:iris-rows:1".into(), &"uri_folder".into()), "{asset}");
    let shown = json(&server.cli_ok(&["data", "show", "--name", "iris-rows", "--label", "latest"]));
    assert_eq!(shown["path"], asset["path"]);
    let err = cli_err(&server, &["data", "create", "--file", yml.to_str().unwrap()]);
    assert!(err.contains("iris-rows:1 already exists"), "{err}");
    let by_asset = invoke(&server, "iris-batch", Path::new("azureml:iris-rows@latest"), &[]);
    let job = json(&server.cli_ok(&["job", "stream", "--name", &by_asset]));
    assert_eq!((&job["status"], &job["input"]["path"]), (&"Completed".into(), &"azureml:iris-rows:1".into()), "{job}");
    let dl = tmp.path().join("dl-asset");
    server.cli_ok(&["job", "download", "--name", &by_asset, "--download-path", dl.to_str().unwrap()]);
    assert!(std::fs::read(dl.join("named-outputs/score/predictions.csv")).unwrap() == want);
    let err =
        cli_err(&server, &["batch-endpoint", "invoke", "--name", "iris-batch", "--input", "azureml:no-such@latest"]);
    assert!(err.contains("data asset \"no-such\""), "{err}");
    let err = cli_err(
        &server,
        &[
            "batch-endpoint",
            "invoke",
            "--name",
            "iris-batch",
            "--input",
            "azureml:iris-rows:1",
            "--input-type",
            "uri_file",
        ],
    );
    assert!(err.contains("data asset azureml:iris-rows:1 is a uri_folder, not a uri_file"), "{err}");
    // Scale to zero: the job's workers are gone.
    no_workers_left(&data).await;
    // Their time is in the usage records, as compute-seconds of the batch deployment.
    let usage: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["usage", "show", "--endpoint", "iris-batch"])).unwrap();
    let record = &usage["records"][0];
    assert_eq!(record["kind"], "batch", "{usage}");
    assert!(record["compute_seconds"].as_f64().unwrap() > 0.0, "{usage}");
    // The model a batch deployment uses cannot be deleted from under it.
    let deployment =
        server.cli_ok(&["batch-deployment", "show", "--name", "iris-sklearn-dpl", "--endpoint-name", "iris-batch"]);
    let model = json(&deployment)["model"].as_str().unwrap_or_default().to_owned();
    let (name, version) = model.trim_start_matches("azureml:").split_once(':').expect("a pinned model reference");
    let out = server.cli(&["model", "delete", "--name", name, "--version", version]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("iris-batch/iris-sklearn-dpl (batch)"), "{err}");
}

/// A deployment of `examples/batch-sklearn`'s driver in the default Python (no conda build).
pub(crate) fn write_deployments(dir: &Path) -> (PathBuf, PathBuf) {
    let model = repo().join("examples/sklearn-score/model");
    let iris = dir.join("iris-dpl.yml");
    std::fs::write(
        &iris,
        format!(
            "name: iris-dpl\nendpoint_name: jobs-batch\ntype: model\nmodel:\n  path: {}\ncode_configuration:\n  code: {}\n  scoring_script: batch_driver.py\ncompute: azureml:cpu-cluster\nresources:\n  instance_count: 1\nsettings:\n  max_concurrency_per_instance: 2\n  mini_batch_size: 3\n  retry_settings: {{max_retries: 1, timeout: 60}}\n  error_threshold: -1\n",
            model.display(),
            repo().join("examples/batch-sklearn/code").display()
        ),
    )
    .unwrap();
    // The legacy schema (settings at the root, no `type`), with a driver that sleeps per file.
    let slow = dir.join("slow-dpl.yml");
    std::fs::write(
        &slow,
        format!(
            "name: slow-dpl\nendpoint_name: jobs-batch\nmodel:\n  path: {}\ncode_configuration:\n  code: {}\n  scoring_script: batch_slow.py\ncompute: azureml:cpu-cluster\nmax_concurrency_per_instance: 2\nmini_batch_size: 1\noutput_file_name: done.txt\nretry_settings: {{max_retries: 2, timeout: 30}}\n",
            model.display(),
            repo().join("python/tests/scripts").display()
        ),
    )
    .unwrap();
    (iris, slow)
}

/// `count` files each asking the slow driver to sleep `seconds`.
fn slow_input(dir: &Path, count: usize, seconds: f64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        std::fs::write(dir.join(format!("f{i:02}.txt")), seconds.to_string()).unwrap();
    }
    dir.to_owned()
}

/// The slow driver's rows for a completed job over `input`: one per file, in input order.
fn slow_rows(server: &Server, job: &BatchJob, input: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(job.output.file.as_ref().expect("merged output")).unwrap();
    let got: Vec<String> = text.lines().map(|l| l.rsplit('/').next().unwrap().to_owned()).collect();
    let mut want: Vec<String> =
        std::fs::read_dir(input).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    want.sort();
    assert!(text.lines().all(|l| l.starts_with("done ") && l.contains(&*server.data_dir.to_string_lossy())));
    (got, want)
}

#[tokio::test]
async fn jobs_report_failures_queue_for_workers_cancel_and_survive_a_server_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let python = test_python();
    let flags = ["--python", python.to_str().unwrap(), "--batch-workers", "2"];
    let mut server = Server::start_on(&data, &flags);
    let (iris, slow) = write_deployments(tmp.path());

    refusals_create_nothing(&server, tmp.path(), &iris).await;
    server.cli_ok(&["batch-endpoint", "create", "--name", "jobs-batch"]);
    server.cli_ok(&["batch-deployment", "create", "--file", iris.to_str().unwrap()]);
    server.cli_ok(&["batch-deployment", "create", "--file", slow.to_str().unwrap()]);
    let ep = json(&server.cli_ok(&["batch-endpoint", "show", "--name", "jobs-batch"]));
    assert_eq!(ep["defaults"]["deployment_name"], "iris-dpl", "the first deployment is the default: {ep}");

    a_malformed_file_fails_alone(&server, tmp.path()).await;
    a_second_job_waits_for_the_pool(&server, tmp.path()).await;
    cancel_leaves_partial_output(&server, tmp.path()).await;
    a_killed_worker_is_replaced_and_no_row_is_lost(&server, tmp.path()).await;
    an_overrunning_mini_batch_is_killed_and_retried(&server, tmp.path()).await;

    // kill -9 mid-job: the restarted server resumes from the uncommitted mini-batches.
    let input = slow_input(&tmp.path().join("crash-in"), 8, 1.0);
    let name = invoke(&server, "jobs-batch", &input, &["--deployment-name", "slow-dpl"]);
    let before = wait_job(&server, &name, Duration::from_secs(120), |j| j.progress.completed_mini_batches >= 2).await;
    assert!(before.progress.completed_mini_batches < 8, "the job ended before the kill: {before:?}");
    assert!(!batch_workers(&data).is_empty());
    // `/metrics` shows the running job's progress.
    let text = reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    let samples = crate::overload::prometheus_samples(&text);
    let progress = |state: &str| {
        samples
            .iter()
            .find(|s| {
                s["name"] == "sluice_batch_job_mini_batches"
                    && s["labels"]["job"] == name.as_str()
                    && s["labels"]["state"] == state
            })
            .unwrap_or_else(|| panic!("no {state} progress for {name}:\n{text}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(progress("total"), 8.0);
    assert!(progress("committed") >= 2.0, "{text}");
    server.kill();
    no_workers_left(&data).await; // they die with the server
    let server = Server::start_on(&data, &flags);
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    assert_eq!(job["status"], "Completed", "{job}");
    let job = server.client().get_job(&name).await.unwrap();
    assert_eq!((job.progress.completed_mini_batches, job.progress.succeeded_items), (8, 8), "{job:?}");
    let (got, want) = slow_rows(&server, &job, &input);
    assert_eq!(got, want, "every row exactly once, in input order");
    no_workers_left(&data).await;
}

/// Bad YAML, an unknown endpoint or input, and clashing names: clear errors, nothing created.
async fn refusals_create_nothing(server: &Server, dir: &Path, iris: &Path) {
    let bad = dir.join("bad.yml");
    std::fs::write(
        &bad,
        "name: bad-dpl\nendpoint_name: jobs-batch\nmodel: azureml:x:1\ncompute: azureml:cpu-cluster\ncolour: blue\n",
    )
    .unwrap();
    let err = cli_err(server, &["batch-deployment", "create", "--file", bad.to_str().unwrap()]);
    assert!(err.contains("unknown field `colour`"), "{err}");
    let text = std::fs::read_to_string(iris).unwrap().replace("mini_batch_size: 3", "mini_batch_size: 0")
        + "  output_action: append_rows\n";
    std::fs::write(&bad, text).unwrap();
    let err = cli_err(server, &["batch-deployment", "create", "--file", bad.to_str().unwrap()]);
    assert!(err.contains("settings.output_action: unknown value \"append_rows\""), "{err}");
    std::fs::write(&bad, std::fs::read_to_string(iris).unwrap().replace("mini_batch_size: 3", "mini_batch_size: 0"))
        .unwrap();
    let err = cli_err(server, &["batch-deployment", "create", "--file", bad.to_str().unwrap()]);
    assert!(err.contains("settings.mini_batch_size: 0: expected a whole number from 1"), "{err}");
    let err = cli_err(server, &["batch-deployment", "create", "--file", iris.to_str().unwrap()]);
    assert!(err.contains("batch endpoint \"jobs-batch\" not found"), "{err}");
    let err =
        cli_err(server, &["batch-endpoint", "invoke", "--name", "nope", "--input", "examples/batch-sklearn/data"]);
    assert!(err.contains("batch endpoint \"nope\" not found"), "{err}");
    let err = cli_err(server, &["batch-endpoint", "invoke", "--name", "nope", "--input", "no/such/folder"]);
    assert!(err.contains("--input no/such/folder") && err.contains("No such file"), "{err}");
    let err = cli_err(server, &["batch-endpoint", "create", "--name", "jobs-batch", "--set", "auth_mode=key"]);
    assert!(err.contains("auth_mode: key: batch endpoints take only aad_token"), "{err}");

    // Online and batch endpoints share one namespace, both ways.
    std::fs::write(dir.join("online.yml"), "name: shared-name\nauth_mode: key\n").unwrap();
    server.cli_ok(&["online-endpoint", "create", "--file", dir.join("online.yml").to_str().unwrap()]);
    let err = cli_err(server, &["batch-endpoint", "create", "--name", "shared-name"]);
    assert!(err.contains("is an online endpoint's name"), "{err}");
    server.cli_ok(&["batch-endpoint", "create", "--name", "batch-name"]);
    std::fs::write(dir.join("online2.yml"), "name: batch-name\n").unwrap();
    let err = cli_err(server, &["online-endpoint", "create", "--file", dir.join("online2.yml").to_str().unwrap()]);
    assert!(err.contains("is a batch endpoint's name"), "{err}");
    // `/endpoints/{online}/jobs` is still the gateway's (a key is needed there, not the admin token).
    let url = format!("{}/endpoints/shared-name/jobs", server.url);
    let resp = reqwest::Client::new().post(&url).bearer_auth(server.admin_token()).body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().starts_with("{\"message\""), "the gateway's error body");
    server.cli_ok(&["batch-endpoint", "delete", "--name", "batch-name", "--yes"]);
    assert_eq!(json(&server.cli_ok(&["batch-endpoint", "list"])), serde_json::json!([]));
    assert_eq!(json(&server.cli_ok(&["job", "list"])), serde_json::json!([]));
}

/// One bad CSV among good ones: with error_threshold -1 the job completes, names the file and
/// writes every good row; with 0 it fails.
async fn a_malformed_file_fails_alone(server: &Server, dir: &Path) {
    let input = dir.join("with-bad");
    std::fs::create_dir_all(&input).unwrap();
    let data = repo().join("examples/batch-sklearn/data");
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), input.join(e.file_name())).unwrap();
    }
    std::fs::write(input.join("iris-04b.csv"), "colour,size\nblue,3\n").unwrap();
    // Through Azure's invocation URL, in the SDK's form, with the caller's (admin) credential.
    let name = azure_invoke(server, &input).await;
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    assert_eq!(job["status"], "Completed", "{job}");
    let p = &job["progress"];
    assert_eq!((&p["total_mini_batches"], &p["completed_mini_batches"]), (&11.into(), &10.into()), "{job}");
    assert_eq!((&p["failed_mini_batches"], &p["failed_items"]), (&1.into(), &1.into()), "{job}");
    let failed = job["failed_files"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{job}");
    assert_eq!(failed[0]["file"], "iris-04b.csv", "named below the input folder: {job}");
    assert!(failed[0]["error"].as_str().unwrap().contains("KeyError"), "{job}");
    let got = std::fs::read(job["output"]["file"].as_str().unwrap()).unwrap();
    assert!(got == std::fs::read(repo().join("examples/batch-sklearn/expected-predictions.csv")).unwrap());
    assert!(job["message"].as_str().unwrap().starts_with("1 of 11 mini-batches failed"), "{job}");
    let logs = server.cli_ok(&["job", "logs", "--name", &name]);
    assert!(logs.contains("run method start") && logs.contains("KeyError"), "the driver's output: {logs}");

    // An MLflow model without code scores file by file: only the bad file fails, in a
    // mini-batch that otherwise succeeds. (An image-only environment runs in the default Python.)
    let mlflow = dir.join("mlflow-dpl.yml");
    std::fs::write(
        &mlflow,
        format!(
            "name: mlflow-dpl\nendpoint_name: jobs-batch\ntype: model\nmodel:\n  name: iris-mlflow\n  path: {}\n  type: mlflow_model\nenvironment:\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\ncompute: azureml:cpu-cluster\nsettings: {{mini_batch_size: 4, output_file_name: scored.csv}}\n",
            repo().join("testdata/models/mlflow-sklearn").display()
        ),
    )
    .unwrap();
    server.cli_ok(&["batch-deployment", "create", "--file", mlflow.to_str().unwrap()]);
    let name = invoke(server, "jobs-batch", &input, &["--deployment-name", "mlflow-dpl"]);
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    let p = &job["progress"];
    assert_eq!((&p["completed_mini_batches"], &p["failed_mini_batches"]), (&3.into(), &0.into()), "{job}");
    assert_eq!((&p["succeeded_items"], &p["failed_items"]), (&64.into(), &1.into()), "{job}");
    assert_eq!(job["failed_files"][0]["file"], "iris-04b.csv", "{job}");
    assert!(job["failed_files"][0]["error"].as_str().unwrap().contains("missing column"), "{job}");
    let scored = std::fs::read_to_string(job["output"]["file"].as_str().unwrap()).unwrap();
    let first: Vec<&str> = scored.lines().next().unwrap().split(',').collect();
    assert!(first[0] == "0" && first[1].parse::<u8>().is_ok() && first[2] == "iris-00.csv", "{scored}");
    assert_eq!(scored.lines().count(), 64);

    let name = invoke(server, "jobs-batch", &input, &["--mini-batch-size", "1", "--set", "error_threshold=0"]);
    let out = server.cli(&["job", "stream", "--name", &name]);
    assert!(!out.status.success());
    let job = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(job["status"], "Failed", "{job}");
    assert!(job["message"].as_str().unwrap().contains("more than error_threshold (0)"), "{job}");
    assert!(job["output"].get("file").is_none(), "no merged output: {job}");
}

/// `POST /endpoints/jobs-batch/jobs` as Azure's SDK sends it; without the credential the answer
/// is the gateway's, the same as for a name that does not exist.
async fn azure_invoke(server: &Server, input: &Path) -> String {
    let http = reqwest::Client::new();
    let url = |ep: &str| format!("{}/endpoints/{ep}/jobs", server.url);
    let body = serde_json::json!({"properties": {
        "inputData": {"input": {"jobInputType": "UriFolder", "uri": input, "mode": "ReadOnlyMount"}},
        "miniBatchSize": 1, "retrySettings": {"maxRetries": 1, "timeout": "PT60S"}}});
    let anonymous = http.post(url("jobs-batch")).json(&body).send().await.unwrap();
    let unknown = http.post(url("no-such-endpoint")).json(&body).send().await.unwrap();
    assert_eq!((anonymous.status().as_u16(), unknown.status().as_u16()), (401, 401));
    assert_eq!(anonymous.text().await.unwrap(), unknown.text().await.unwrap());
    let resp = http
        .post(url("jobs-batch"))
        .bearer_auth(server.admin_token())
        .header("azureml-model-deployment", "iris-dpl")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let job: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(job["properties"]["status"], job["status"], "{job}");
    assert_eq!(job["properties"]["progress"]["total_mini_batches"], 11, "{job}");
    let name = job["name"].as_str().unwrap().to_owned();
    let shown: serde_json::Value = http
        .get(format!("{}/{name}", url("jobs-batch")))
        .bearer_auth(server.admin_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["name"], name.as_str(), "{shown}");
    name
}

/// The pool has 2 workers and a slow-dpl job takes both: the next job waits Queued, then runs.
async fn a_second_job_waits_for_the_pool(server: &Server, dir: &Path) {
    let input = slow_input(&dir.join("queue-in"), 4, 1.0);
    let first = invoke(server, "jobs-batch", &input, &["--deployment-name", "slow-dpl"]);
    let second = invoke(server, "jobs-batch", &input, &["--deployment-name", "slow-dpl"]);
    let queued = wait_job(server, &second, Duration::from_secs(30), |j| j.status != "NotStarted").await;
    assert_eq!((queued.status.as_str(), queued.queue_position), ("Queued", Some(1)), "{queued:?}");
    let listed = server.client().list_batch_endpoint_jobs("jobs-batch").await.unwrap();
    let running = listed.iter().find(|j| j.name == first).unwrap();
    assert!(["NotStarted", "Running"].contains(&running.status.as_str()), "{running:?}");
    let table = server.cli_ok(&["batch-endpoint", "list-jobs", "--name", "jobs-batch", "-o", "table"]);
    assert!(table.contains("Queued"), "{table}");
    let started = wait_job(server, &second, Duration::from_secs(60), |j| j.status != "Queued").await;
    let first = server.client().get_job(&first).await.unwrap();
    assert_eq!(first.status, "Completed", "first come, first served: {started:?}");
    let second = json(&server.cli_ok(&["job", "stream", "--name", &second]));
    assert_eq!(second["status"], "Completed", "{second}");
}

/// Cancel stops the workers; committed parts stay, the output is not merged.
async fn cancel_leaves_partial_output(server: &Server, dir: &Path) {
    let input = slow_input(&dir.join("cancel-in"), 6, 1.0);
    let name = invoke(server, "jobs-batch", &input, &["--deployment-name", "slow-dpl"]);
    wait_job(server, &name, Duration::from_secs(60), |j| j.progress.completed_mini_batches >= 1).await;
    let job = json(&server.cli_ok(&["job", "cancel", "--name", &name]));
    assert_eq!((&job["status"], &job["partial"]), (&"Canceled".into(), &true.into()), "{job}");
    no_workers_left(&server.data_dir).await;
    let job = server.client().get_job(&name).await.unwrap();
    assert!(job.output.file.is_none() && !Path::new(&job.output.path).join("done.txt").exists(), "{job:?}");
    let parts = std::fs::read_dir(&job.output.parts_path).unwrap().count() as u64;
    assert!(parts >= 1 && job.progress.completed_mini_batches < 6, "{job:?}");
    let err = cli_err(server, &["job", "cancel", "--name", &name]);
    assert!(err.contains("has already ended (Canceled)"), "{err}");
}

/// `kill -9` of a worker mid-job: its mini-batch is retried on a new worker, and the output has
/// every row exactly once, in input order.
async fn a_killed_worker_is_replaced_and_no_row_is_lost(server: &Server, dir: &Path) {
    let input = slow_input(&dir.join("worker-kill-in"), 6, 0.7);
    let name = invoke(server, "jobs-batch", &input, &["--deployment-name", "slow-dpl"]);
    wait_job(server, &name, Duration::from_secs(60), |j| j.progress.completed_mini_batches >= 1).await;
    let workers = batch_workers(&server.data_dir);
    assert!(!workers.is_empty(), "the job's workers run");
    let status = std::process::Command::new("kill").args(["-9", &workers[0].to_string()]).status().unwrap();
    assert!(status.success());
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    assert_eq!((&job["status"], &job["progress"]["succeeded_items"]), (&"Completed".into(), &6.into()), "{job}");
    let job = server.client().get_job(&name).await.unwrap();
    let (got, want) = slow_rows(server, &job, &input);
    assert_eq!(got, want, "every row exactly once, in input order");
    no_workers_left(&server.data_dir).await;
}

/// A mini-batch past `retry_settings.timeout` has its worker killed; out of retries, its file
/// is reported and the rest of the job goes on.
async fn an_overrunning_mini_batch_is_killed_and_retried(server: &Server, dir: &Path) {
    let input = dir.join("timeout-in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a-quick.txt"), "0").unwrap();
    std::fs::write(input.join("b-stuck.txt"), "30").unwrap();
    let name = invoke(server, "jobs-batch", &input, &["--deployment-name", "slow-dpl", "--set", "timeout=1"]);
    let job = server.client().get_job(&name).await.unwrap();
    assert_eq!((job.settings.timeout, job.settings.max_retries), (1, 2), "{job:?}");
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!((&job["progress"]["succeeded_items"], &job["progress"]["failed_items"]), (&1.into(), &1.into()));
    assert_eq!(job["failed_files"][0]["file"], "b-stuck.txt", "{job}");
    assert!(job["failed_files"][0]["error"].as_str().unwrap().contains("retry_settings.timeout (1 s)"), "{job}");
    no_workers_left(&server.data_dir).await;
}

/// Named compute pools: a deployment draws instances from its own pool, a full pool queues its
/// jobs in priority order without holding back another pool's, growing the pool starts the next
/// job at once, and a pool in use cannot be deleted.
#[tokio::test]
async fn compute_pools_queue_their_jobs_by_priority() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let python = test_python();
    let server = Server::start_on(&data, &["--python", python.to_str().unwrap(), "--batch-workers", "4"]);

    // A fresh install has the default pool, as large as the server's worker cap.
    let pools = json(&server.cli_ok(&["compute", "list"]));
    assert_eq!(pools.as_array().unwrap().len(), 1, "{pools}");
    assert_eq!((&pools[0]["name"], &pools[0]["max_instances"]), (&"cpu-cluster".into(), &4.into()), "{pools}");
    let solo = json(&server.cli_ok(&[
        "compute",
        "create",
        "--name",
        "solo",
        "--type",
        "amlcompute",
        "--min-instances",
        "0",
        "--max-instances",
        "1",
    ]));
    assert_eq!(
        (&solo["id"], &solo["max_instances"], &solo["current_instances"]),
        (&"azureml:solo".into(), &1.into(), &0.into())
    );
    let err = cli_err(&server, &["compute", "create", "--name", "solo", "--max-instances", "2"]);
    assert!(err.contains("compute \"solo\" already exists"), "{err}");
    let err = cli_err(&server, &["compute", "create", "--name", "k8s", "--type", "kubernetes"]);
    assert!(err.contains("type: \"kubernetes\": only amlcompute"), "{err}");
    let err = cli_err(&server, &["compute", "show", "--name", "nope"]);
    assert!(err.contains("compute \"nope\" not found"), "{err}");

    server.cli_ok(&["batch-endpoint", "create", "--name", "jobs-batch"]);
    let (_, slow) = write_deployments(tmp.path());
    let text = std::fs::read_to_string(&slow).unwrap();
    let on = |compute: &str, name: &str| {
        let file = tmp.path().join(format!("{name}.yml"));
        let yml = text
            .replace("name: slow-dpl", &format!("name: {name}"))
            .replace("compute: azureml:cpu-cluster", &format!("compute: azureml:{compute}"))
            .replace("max_concurrency_per_instance: 2", "max_concurrency_per_instance: 1");
        std::fs::write(&file, yml).unwrap();
        file
    };
    let err = cli_err(&server, &["batch-deployment", "create", "--file", on("gpu-pool", "lost").to_str().unwrap()]);
    assert!(err.contains("compute: compute \"gpu-pool\" not found: create it"), "{err}");
    server.cli_ok(&["batch-deployment", "create", "--file", on("solo", "solo-dpl").to_str().unwrap()]);
    server.cli_ok(&["batch-deployment", "create", "--file", on("cpu-cluster", "shared-dpl").to_str().unwrap()]);

    let input = slow_input(&tmp.path().join("in"), 3, 1.5);
    let solo_job = |extra: &[&str]| {
        let mut args = vec!["--deployment-name", "solo-dpl"];
        args.extend_from_slice(extra);
        invoke(&server, "jobs-batch", &input, &args)
    };
    let first = solo_job(&[]);
    wait_job(&server, &first, Duration::from_secs(60), |j| j.status == "Running").await;
    let low = solo_job(&["--priority", "low"]);
    let high = solo_job(&["--priority", "HIGH"]);
    let held = wait_job(&server, &low, Duration::from_secs(30), |j| j.status == "Queued").await;
    assert!(held.message.as_deref().unwrap_or("").contains("compute solo (1 of 1 in use)"), "{held:?}");
    let high_job = wait_job(&server, &high, Duration::from_secs(30), |j| j.status == "Queued").await;
    assert_eq!((high_job.priority.as_str(), high_job.compute.as_str()), ("high", "azureml:solo"));
    assert_eq!(server.client().get_job(&low).await.unwrap().queue_position, Some(2));
    assert_eq!(high_job.queue_position, Some(1), "high priority goes ahead of an earlier low one");
    // The queue is visible on the pool; another pool's job does not wait behind it.
    let shown = json(&server.cli_ok(&["compute", "show", "--name", "solo"]));
    assert_eq!(shown["running_jobs"], serde_json::json!([first]), "{shown}");
    assert_eq!(shown["queued_jobs"], serde_json::json!([high, low]), "{shown}");
    assert_eq!(shown["current_instances"], 1, "{shown}");
    let quick = slow_input(&tmp.path().join("quick"), 1, 0.2);
    let other = invoke(&server, "jobs-batch", &quick, &["--deployment-name", "shared-dpl"]);
    let other = json(&server.cli_ok(&["job", "stream", "--name", &other]));
    assert_eq!(other["status"], "Completed", "{other}");

    // High before low: when the high job runs, the low one still waits.
    wait_job(&server, &high, Duration::from_secs(60), |j| j.status == "Running").await;
    assert_eq!(server.client().get_job(&low).await.unwrap().status, "Queued");
    // A second instance starts the low job beside it at once.
    let grown = json(&server.cli_ok(&["compute", "update", "--name", "solo", "--max-instances", "2"]));
    assert_eq!(grown["max_instances"], 2, "{grown}");
    wait_job(&server, &low, Duration::from_secs(10), |j| j.status != "Queued").await;
    let high_now = server.client().get_job(&high).await.unwrap();
    assert_eq!(high_now.status, "Running", "the low job started beside the high one: {high_now:?}");
    for job in [&first, &high, &low] {
        let done = json(&server.cli_ok(&["job", "stream", "--name", job]));
        assert_eq!(done["status"], "Completed", "{done}");
    }

    let err = cli_err(&server, &["compute", "delete", "--name", "solo", "--yes"]);
    assert!(err.contains("used by batch deployments jobs-batch/solo-dpl"), "{err}");
    server.cli_ok(&["compute", "create", "--name", "spare"]);
    server.cli_ok(&["compute", "delete", "--name", "spare", "--yes"]);
    let names: Vec<String> = json(&server.cli_ok(&["compute", "list"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cpu-cluster", "solo"]);
    no_workers_left(&data).await;
}
