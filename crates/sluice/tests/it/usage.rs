//! Usage records: running replicas are metered in instance-seconds per hour and deployment, and
//! `sluice usage show` prices them with the config's prices.

use crate::harness::{Server, deploy_iris};
use std::time::{Duration, Instant};

#[tokio::test]
async fn instance_seconds_are_metered_and_priced() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.yml");
    std::fs::write(&config, "prices:\n  currency: EUR\n  instance_hour:\n    default: 3.6\n").unwrap();
    let server = Server::start_on(&tmp.path().join("data"), &["--config", config.to_str().unwrap()]);
    let started = Instant::now();
    deploy_iris(&server);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let report: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["usage", "show", "--endpoint", "iris-ep"])).unwrap();
    let ran = started.elapsed().as_secs_f64();
    let seconds = report["total_instance_seconds"].as_f64().unwrap();
    // One replica, metered every 2 s: at least one period, at most the time it could have run.
    assert!(seconds >= 1.5 && seconds <= ran + 2.5, "{seconds} instance-seconds after {ran:.1} s: {report}");
    let record = &report["records"][0];
    assert_eq!((record["kind"].as_str(), record["deployment"].as_str()), (Some("online"), Some("blue")), "{report}");
    assert_eq!(record["instance_type"], "Standard_DS1_v2");
    assert!(record["hour"].as_str().unwrap().ends_with(":00:00Z"), "{report}");
    // 3.6 per instance-hour is 0.001 per instance-second.
    let cost = report["total_cost"].as_f64().unwrap();
    assert!((cost - seconds * 0.001).abs() < 1e-9, "{cost} for {seconds} s");
    assert_eq!(report["currency"], "EUR");

    let table = server.cli_ok(&["usage", "show", "-o", "table", "--since", "2020-01-01"]);
    assert!(table.contains("iris-ep") && table.contains("EUR"), "{table}");
    let out = server.cli(&["usage", "show", "--since", "last tuesday"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("expected an RFC 3339 time"), "{err}");
    let none: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["usage", "show", "--endpoint", "no-such-ep"])).unwrap();
    assert_eq!(none["records"], serde_json::json!([]));
}

#[tokio::test]
async fn built_in_catalog_models_take_the_configured_token_prices() {
    use crate::serverless::{create_endpoint, keys, post, usage_after};
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.yml");
    std::fs::write(
        &config,
        "prices:\n  catalog:\n    SmolLM2-135M-Instruct: {input_per_1k: 2.0, output_per_1k: 4.0}\n",
    )
    .unwrap();
    let server = Server::start_on(&tmp.path().join("data"), &["--config", config.to_str().unwrap()]);
    let shown: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["model-catalog", "show", "--name", "SmolLM2-135M-Instruct"])).unwrap();
    assert_eq!(
        (shown["price_per_1k_input_tokens"].as_f64(), shown["price_per_1k_output_tokens"].as_f64()),
        (Some(2.0), Some(4.0)),
        "{shown}"
    );
    // The other built-in model keeps the catalog's price.
    let other: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["model-catalog", "show", "--name", "all-MiniLM-L6-v2"])).unwrap();
    assert_eq!(other["price_per_1k_input_tokens"].as_f64(), Some(0.00002), "{other}");

    create_endpoint(&server, tmp.path(), "priced", "SmolLM2-135M-Instruct", &[]);
    let (key, _) = keys(&server, "priced");
    let body = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0});
    let answer: serde_json::Value =
        post(&format!("{}/serverless/priced/chat/completions", server.url), ("api-key", &key), body)
            .await
            .json()
            .await
            .unwrap();
    let (p, c) =
        (answer["usage"]["prompt_tokens"].as_f64().unwrap(), answer["usage"]["completion_tokens"].as_f64().unwrap());
    let u = usage_after(&server, "priced", 1).await;
    let want = p / 1000.0 * 2.0 + c / 1000.0 * 4.0;
    assert!((u["cost"].as_f64().unwrap() - want).abs() < 1e-12, "{u}: expected {want}");
}
