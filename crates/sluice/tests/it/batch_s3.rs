//! Batch jobs whose input and output are in S3: moto's S3 server on loopback, the real server,
//! CLI and Python batch worker.

use crate::batch::{cli_err, invoke, json, write_deployments};
use crate::harness::{Server, repo, test_python};
use std::path::Path;
use std::time::Duration;

/// A real S3 API on loopback: moto's server (`moto[server]` in the dev venv), stopped on drop.
struct S3 {
    child: std::process::Child,
    endpoint: String,
}

const S3_ENV: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")];

impl S3 {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = std::process::Command::new(test_python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto's S3 server (moto[server] is in scripts/requirements-dev.txt)");
        // Owned at once, so it is stopped (on drop) whatever happens next.
        let s3 = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s3;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto's S3 server did not listen; see {}", dir.join("moto.log").display());
    }

    /// Runs boto3 (installed with moto) against the server: `code` sees `s3` and `bucket`.
    fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, os, sys\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1')\nbucket = 'jobs'\n{code}",
            self.endpoint
        );
        let out = std::process::Command::new(test_python()).args(["-c", &script]).envs(S3_ENV).output().unwrap();
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Inputs and outputs in an object store: a job over `s3://bucket/prefix` stages its objects for
/// the workers, uploads its merged output to an `s3://` output path, names a failed object below
/// the input, and a missing bucket is a clear error.
#[tokio::test]
async fn batch_jobs_read_and_write_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(tmp.path());
    let data = repo().join("examples/batch-sklearn/data");
    s3.boto(&format!(
        "s3.create_bucket(Bucket=bucket)\nfor f in sorted(os.listdir('{d}')):\n    s3.upload_file(os.path.join('{d}', f), bucket, 'in/' + f)\n\
         s3.upload_file(os.path.join('{d}', 'iris-00.csv'), bucket, 'mixed/a-good.csv')\n\
         s3.put_object(Bucket=bucket, Key='mixed/b-bad.csv', Body=b'colour,size\\nblue,3\\n')\n",
        d = data.display()
    ));
    let env: Vec<(&str, &str)> =
        S3_ENV.iter().copied().chain([("AWS_ENDPOINT", s3.endpoint.as_str()), ("AWS_ALLOW_HTTP", "true")]).collect();
    let python = test_python();
    let server = Server::start_with_env(&tmp.path().join("data"), &["--python", python.to_str().unwrap()], &env);
    let (iris, _) = write_deployments(tmp.path());
    server.cli_ok(&["batch-endpoint", "create", "--name", "jobs-batch"]);
    server.cli_ok(&["batch-deployment", "create", "--file", iris.to_str().unwrap()]);

    let name = invoke(&server, "jobs-batch", Path::new("s3://jobs/in"), &["--output-path", "s3://jobs/out/"]);
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    assert_eq!((&job["status"], &job["input"]["path"]), (&"Completed".into(), &"s3://jobs/in".into()), "{job}");
    assert_eq!((&job["progress"]["total_files"], &job["progress"]["succeeded_items"]), (&10.into(), &64.into()));
    assert_eq!(job["output"]["file"], "s3://jobs/out/predictions.csv", "{job}");
    let got =
        s3.boto("sys.stdout.write(s3.get_object(Bucket=bucket, Key='out/predictions.csv')['Body'].read().decode())");
    let want = std::fs::read_to_string(repo().join("examples/batch-sklearn/expected-predictions.csv")).unwrap();
    assert!(got == want, "the uploaded predictions differ:\n{got}");
    // `job download` still has the output (the job's local copy).
    let dl = tmp.path().join("dl");
    server.cli_ok(&["job", "download", "--name", &name, "--download-path", dl.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dl.join("named-outputs/score/predictions.csv")).unwrap(), want);

    // A malformed object fails alone and is named below the input prefix.
    let name = invoke(&server, "jobs-batch", Path::new("s3://jobs/mixed"), &["--mini-batch-size", "1"]);
    let job = json(&server.cli_ok(&["job", "stream", "--name", &name]));
    assert_eq!((&job["status"], &job["progress"]["failed_items"]), (&"Completed".into(), &1.into()), "{job}");
    assert_eq!(job["failed_files"][0]["file"], "b-bad.csv", "{job}");

    let err =
        cli_err(&server, &["batch-endpoint", "invoke", "--name", "jobs-batch", "--input", "s3://no-such-bucket/in"]);
    assert!(err.contains("input.path: cannot list s3://no-such-bucket/in") && err.contains("NoSuchBucket"), "{err}");
    let err =
        cli_err(&server, &["batch-endpoint", "invoke", "--name", "jobs-batch", "--input", "s3://jobs/nothing-here"]);
    assert!(err.contains("s3://jobs/nothing-here holds no files"), "{err}");
    assert!(!err.contains("testing"), "no credential in the message: {err}");
}
