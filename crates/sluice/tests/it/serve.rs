//! `sluice serve`: one deployment in the foreground on a local port, no server, no auth,
//! restarted when its scoring script changes.

use crate::harness::{BIN, repo, test_python};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn a_local_deployment_scores_and_reloads_when_the_script_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let example = repo().join("examples/sklearn-score");
    std::fs::create_dir_all(tmp.path().join("code")).unwrap();
    std::fs::copy(example.join("onlinescoring/score.py"), tmp.path().join("code/score.py")).unwrap();
    let dep = tmp.path().join("deployment.yml");
    std::fs::write(
        &dep,
        format!(
            "name: blue\nmodel:\n  path: {}\ncode_configuration:\n  code: code\n  scoring_script: score.py\n",
            example.join("model").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        // Azure's spelling; `sluice serve --file` is the same command.
        .args(["online-deployment", "create", "--local", "--local-port", "0", "--file"])
        .arg(&dep)
        .env("SLUICE_PYTHON", test_python())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // The serve process, its replica and workers share a process group; stop them all at the end.
    let mut group = Group(child);
    let child = &mut group.0;
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("SLUICE_LOCAL ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let body = std::fs::read(example.join("request.json")).unwrap();
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("serve printed its URL");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let score = |url: String| {
        let (http, body) = (http.clone(), body.clone());
        async move {
            match http.post(url).header("content-type", "application/json").body(body).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        }
    };
    assert_eq!(score(url.clone()).await, (200, "[0, 2]".to_owned()), "no key needed locally");

    // Edit the script: the next replica serves the new code.
    let script = std::fs::read_to_string(tmp.path().join("code/score.py")).unwrap();
    std::fs::write(
        tmp.path().join("code/score.py"),
        script.replace("return result.tolist()", "return {'edited': result.tolist()}"),
    )
    .unwrap();
    let new_url = rx.recv_timeout(Duration::from_secs(60)).expect("the replica restarted");
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = score(new_url.clone()).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(group);
    assert_eq!(last, (200, r#"{"edited": [0, 2]}"#.to_owned()));
}

struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-s", "TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_custom_container_runs_locally_behind_the_same_replica() {
    let child = Command::new(BIN)
        .args(["serve", "--port", "0", "--no-reload", "--file"])
        .arg(repo().join("examples/custom-container/deployment.yml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut group = Group(child);
    let stdout = group.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("SLUICE_LOCAL ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("serve printed its URL");
    let body = std::fs::read(repo().join("examples/custom-container/sample-request.json")).unwrap();
    let resp = reqwest::Client::new().post(&url).body(body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"predictions": [2.5, 3.0, 4.5]}"#);
    drop(group);
}
