//! `sluice batch-deployment run --local` with the real binary, the example drivers and an MLflow
//! model: no server to start, the same output as a server's job.

use crate::batch::{json, write_deployments};
use crate::harness::{repo, test_python};

/// `batch-deployment run --local`: the same deployment YAML over a local folder, no server to
/// start; the output matches the server's, a failing run exits 1 with the reason, and nothing is
/// left in the temporary directory.
#[test]
fn batch_deployment_run_local_scores_a_folder_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let (iris, _) = write_deployments(tmp.path());
    let python = test_python();
    let run = |extra: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(["batch-deployment", "run", "--file", iris.to_str().unwrap(), "--python", python.to_str().unwrap()])
            .args(extra)
            .current_dir(repo())
            .env("TMPDIR", &scratch)
            .env_remove("SLUICE_SERVER")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let out_dir = tmp.path().join("out");
    let out = run(&["--local", "--input", "examples/batch-sklearn/data", "--output-path", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = json(&text(&out.stdout));
    assert_eq!((&job["status"], &job["progress"]["succeeded_items"]), (&"Completed".into(), &64.into()), "{job}");
    let got = std::fs::read(out_dir.join("predictions.csv")).unwrap();
    assert!(got == std::fs::read(repo().join("examples/batch-sklearn/expected-predictions.csv")).unwrap());
    assert!(text(&out.stderr).contains(&format!("output: {}", out_dir.join("predictions.csv").display())));

    // 200 files (20 copies of each example file), by the custom driver and by an MLflow model
    // without code: every row, in input order.
    let many = tmp.path().join("many");
    std::fs::create_dir_all(&many).unwrap();
    let examples = repo().join("examples/batch-sklearn/data");
    let mut names: Vec<String> =
        std::fs::read_dir(&examples).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    for name in &names {
        for copy in 0..20 {
            std::fs::copy(examples.join(name), many.join(format!("{}-{copy:02}.csv", name.trim_end_matches(".csv"))))
                .unwrap();
        }
    }
    let expected = std::fs::read_to_string(repo().join("examples/batch-sklearn/expected-predictions.csv")).unwrap();
    let mut want = String::new();
    for name in &names {
        for copy in 0..20 {
            let file = format!("{}-{copy:02}.csv", name.trim_end_matches(".csv"));
            for line in expected.lines().filter(|l| l.split(' ').next() == Some(name.as_str())) {
                want.push_str(&line.replacen(name.as_str(), &file, 1));
                want.push('\n');
            }
        }
    }
    let many_out = tmp.path().join("many-out");
    let out = run(&["--local", "--input", many.to_str().unwrap(), "--output-path", many_out.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&text(&out.stdout))["progress"]["total_files"], 200);
    assert!(std::fs::read_to_string(many_out.join("predictions.csv")).unwrap() == want, "200 files in input order");
    let mlflow = tmp.path().join("mlflow-dpl.yml");
    std::fs::write(
        &mlflow,
        format!(
            "name: mlflow-dpl\ntype: model\nmodel:\n  path: {}\n  type: mlflow_model\nenvironment:\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest\ncompute: azureml:cpu-cluster\nsettings: {{mini_batch_size: 7, output_file_name: scored.csv}}\n",
            repo().join("testdata/models/mlflow-sklearn").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "batch-deployment",
            "run",
            "--local",
            "--file",
            mlflow.to_str().unwrap(),
            "--python",
            python.to_str().unwrap(),
        ])
        .args(["--input", many.to_str().unwrap(), "--output-path", many_out.to_str().unwrap()])
        .env("TMPDIR", &scratch)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scored = std::fs::read_to_string(many_out.join("scored.csv")).unwrap();
    let files: Vec<&str> = scored.lines().map(|l| l.rsplit(',').next().unwrap()).collect();
    assert_eq!(files.len(), want.lines().count(), "one row per input row");
    let order: Vec<&str> = want.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(files, order, "file by file, in input order");

    // A malformed file with error_threshold 0: the job fails, the reason and the driver's
    // traceback are on stderr, and the exit status says so.
    let bad = tmp.path().join("bad-in");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("a.csv"), "colour,size\nblue,3\n").unwrap();
    let out = run(&["--local", "--input", bad.to_str().unwrap(), "--set", "settings.error_threshold=0"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("more than error_threshold (0)") && err.contains("KeyError"), "{err}");

    // Refusals before anything starts.
    let out = run(&["--input", "examples/batch-sklearn/data"]);
    assert!(!out.status.success() && text(&out.stderr).contains("needs --local"), "{}", text(&out.stderr));
    let out = run(&["--local", "--input", "no/such/folder"]);
    assert!(text(&out.stderr).contains("--input no/such/folder"), "{}", text(&out.stderr));
    let out = run(&["--local", "--input", "examples/batch-sklearn/data", "--set", "settings.mini_batch_size=0"]);
    assert!(text(&out.stderr).contains("settings.mini_batch_size: 0"), "{}", text(&out.stderr));
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "the private server's directory is removed: {left:?}");
}
