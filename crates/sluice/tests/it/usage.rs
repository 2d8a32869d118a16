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
