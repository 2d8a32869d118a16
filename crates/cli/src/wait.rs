//! Waiting on long-running operations: poll every 500 ms until the resource settles or is gone,
//! with a spinner on stderr when stderr is a terminal.

use crate::error::CliError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_api::deployment::OnlineDeployment;
use sluice_api::endpoint::OnlineEndpoint;
use sluice_client::ClientError;
use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Past this the CLI stops waiting; the operation goes on on the server.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(30 * 60);

/// A resource with Azure ML's `provisioning_state`.
pub(crate) trait Provisioned {
    fn state(&self) -> &str;
    /// Why it failed, when the resource says.
    fn message(&self) -> Option<&str>;
}

impl Provisioned for OnlineDeployment {
    fn state(&self) -> &str {
        &self.provisioning_state
    }
    fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl Provisioned for OnlineEndpoint {
    fn state(&self) -> &str {
        &self.provisioning_state
    }
    fn message(&self) -> Option<&str> {
        None
    }
}

/// What the wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// `Succeeded` (or `Failed`, an error).
    Settled,
    /// The resource answers 404.
    Gone,
}

/// Polls `get` until `goal`. `what` names the resource (`online deployment blue`) and
/// `on_failure` is added to the error when it fails (where to look next). Returns the settled
/// resource, or `None` once it is gone.
pub(crate) async fn wait_for<T, F, Fut>(
    what: &str,
    goal: Goal,
    on_failure: Option<String>,
    mut get: F,
) -> Result<Option<T>, CliError>
where
    T: Provisioned,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let spinner = Spinner::start(what);
    let started = Instant::now();
    loop {
        match get().await {
            Err(e) if goal == Goal::Gone && e.is_not_found() => return Ok(None),
            Err(e) => return Err(CliError::client(e)),
            Ok(resource) => {
                let state = resource.state();
                if state == "Failed" {
                    drop(spinner);
                    let mut text = format!("{what} failed");
                    if let Some(m) = resource.message().filter(|m| !m.trim().is_empty()) {
                        text = format!("{text}: {}", m.trim());
                    }
                    if let Some(next) = on_failure {
                        text = format!("{text}\n{next}");
                    }
                    return Err(CliError::Failed(text));
                }
                if goal == Goal::Settled && state == "Succeeded" {
                    return Ok(Some(resource));
                }
                spinner.show(what, state, started.elapsed());
            }
        }
        if started.elapsed() > GIVE_UP_AFTER {
            return Err(CliError::Failed(format!(
                "gave up waiting for {what} after {} minutes; the operation goes on on the server",
                GIVE_UP_AFTER.as_secs() / 60
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A spinner that exists only when stderr is a terminal, and clears itself when dropped.
struct Spinner(Option<ProgressBar>);

impl Spinner {
    fn start(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{what}: waiting"));
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }

    fn show(&self, what: &str, state: &str, elapsed: Duration) {
        if let Some(bar) = &self.0 {
            bar.set_message(format!("{what}: {state} ({}s)", elapsed.as_secs()));
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::{ErrorBody, ErrorCode};
    use std::cell::Cell;

    struct Fake(&'static str, Option<&'static str>);

    impl Provisioned for Fake {
        fn state(&self) -> &str {
            self.0
        }
        fn message(&self) -> Option<&str> {
            self.1
        }
    }

    fn not_found() -> ClientError {
        ClientError::Api { status: 404, body: ErrorBody::new(ErrorCode::NotFound, "gone") }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_through_creating_until_succeeded() {
        let polls = Cell::new(0);
        let states = ["Creating", "Creating", "Succeeded"];
        let got = wait_for("online deployment blue", Goal::Settled, None, || {
            let i = polls.get();
            polls.set(i + 1);
            async move { Ok(Fake(states[i], None)) }
        })
        .await
        .unwrap();
        assert_eq!(got.unwrap().0, "Succeeded");
        assert_eq!(polls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_reports_the_message_and_next_step() {
        let err = wait_for("online deployment blue", Goal::Settled, Some("see the logs".into()), || async {
            Ok(Fake("Failed", Some("model file missing")))
        })
        .await
        .map(|_: Option<Fake>| ())
        .unwrap_err();
        assert_eq!(err.render(), "error: online deployment blue failed: model file missing\n  see the logs");
    }

    #[tokio::test(start_paused = true)]
    async fn delete_ends_at_404() {
        let polls = Cell::new(0);
        let got = wait_for("online endpoint ep", Goal::Gone, None, || {
            polls.set(polls.get() + 1);
            let done = polls.get() > 2;
            async move { if done { Err(not_found()) } else { Ok(Fake("Deleting", None)) } }
        })
        .await
        .unwrap();
        assert!(got.is_none());
        assert_eq!(polls.get(), 3);
    }
}
