//! MLflow models without code: a scikit-learn model (no ONNX flavor) deploys from YAML alone.
//! Sluice builds the model's own `conda.yaml`, runs the generated MLflow scorer, accepts Azure's
//! `input_data` and MLflow's payloads, and checks input against the signature.

use crate::harness::{Server, primary_key, repo, test_python};

fn deployment(dir: &std::path::Path) -> String {
    let file = dir.join("mlflow-dep.yml");
    std::fs::write(
        &file,
        format!(
            "name: blue\nendpoint_name: mlflow-ep\nmodel:\n  name: iris-sklearn\n  path: {}\n  type: mlflow_model\ninstance_type: cpu=1,memory=1Gi\n",
            repo().join("testdata/models/mlflow-sklearn").display()
        ),
    )
    .unwrap();
    file.to_str().unwrap().to_owned()
}

async fn post(url: &str, key: &str, body: serde_json::Value) -> (u16, Option<String>, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let model_status = resp.headers().get("ms-azureml-model-error-statuscode").map(|v| v.to_str().unwrap().to_owned());
    (status, model_status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_scikit_learn_mlflow_model_deploys_without_code_and_checks_its_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let python = test_python();
    let server = Server::start_on(&tmp.path().join("data"), &["--python", python.to_str().unwrap()]);
    std::fs::write(tmp.path().join("ep.yml"), "name: mlflow-ep\nauth_mode: key\n").unwrap();
    server.cli_ok(&["online-endpoint", "create", "--file", tmp.path().join("ep.yml").to_str().unwrap()]);
    server.cli_ok(&["online-deployment", "create", "--file", &deployment(tmp.path()), "--all-traffic"]);
    let key = primary_key(&server, "mlflow-ep");
    let url = format!("{}/endpoints/mlflow-ep/score", server.url);
    let columns = serde_json::json!(["sepal_length", "sepal_width", "petal_length", "petal_width"]);
    let rows = serde_json::json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]);

    // Azure's form: a bare array back.
    let split = serde_json::json!({"columns": columns, "index": [0, 1], "data": rows});
    let (status, _, body) = post(&url, &key, serde_json::json!({ "input_data": split })).await;
    assert_eq!((status, &body), (200, &serde_json::json!([0, 2])));
    // MLflow's forms: wrapped in `predictions`.
    let (status, _, body) = post(&url, &key, serde_json::json!({ "dataframe_split": split })).await;
    assert_eq!((status, &body), (200, &serde_json::json!({"predictions": [0, 2]})));
    let records = serde_json::json!([
        {"petal_width": 0.2, "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
    ]);
    let (status, _, body) = post(&url, &key, serde_json::json!({ "dataframe_records": records })).await;
    assert_eq!((status, &body), (200, &serde_json::json!({"predictions": [0, 2]})));

    // Input that breaks the signature: the model's 400 (424 through the endpoint, as Azure ML
    // answers model errors) names the column.
    let missing =
        serde_json::json!({"columns": ["sepal_length", "sepal_width", "petal_length"], "data": [[5.1, 3.5, 1.4]]});
    let (status, model_status, body) = post(&url, &key, serde_json::json!({ "input_data": missing })).await;
    assert_eq!((status, model_status.as_deref()), (424, Some("400")), "{body}");
    assert!(body.to_string().contains("petal_width"), "{body}");
    let wrong = serde_json::json!({"columns": columns, "data": [[5.1, "wide", 1.4, 0.2]]});
    let (status, model_status, body) = post(&url, &key, serde_json::json!({ "input_data": wrong })).await;
    assert_eq!((status, model_status.as_deref()), (424, Some("400")), "{body}");
    assert!(body.to_string().contains("sepal_width"), "{body}");

    // Swagger from the signature.
    let doc = crate::harness::valid_swagger(&server, "mlflow-ep", &key, "3").await;
    crate::harness::valid_swagger(&server, "mlflow-ep", &key, "2").await;
    assert!(doc.to_string().contains("petal_width"), "{doc}");

    // The environment came from the model's conda.yaml.
    let envs: Vec<_> = std::fs::read_dir(server.data_dir.join("envs")).unwrap().filter_map(Result::ok).collect();
    assert_eq!(envs.len(), 1);
    let log = std::fs::read_to_string(envs[0].path().join("build.log")).unwrap();
    assert!(log.contains("scikit-learn==1.8.0") && log.contains("cloudpickle==3.1.3"), "{log}");
}
