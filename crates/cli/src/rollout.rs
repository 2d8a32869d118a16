//! `sluice online-endpoint rollout ...`: move an endpoint's live traffic to one deployment step
//! by step, each step gated on what the gateway measured; `rollout show|abort` follow or stop it.

use crate::Ctx;
use crate::error::CliError;
use crate::output::{Row, print_one};
use crate::wait::{GIVE_UP_AFTER, POLL_INTERVAL};
use sluice_api::rollout::{Rollout, RolloutSpec, RolloutState};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `rollout --name E --to D [gates]` starts a rollout; `rollout show|abort --name E` act on the
/// endpoint's latest one. Flags and subcommands cannot be mixed.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: Option<RolloutAction>,
    #[command(flatten)]
    pub start: RolloutStartArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum RolloutAction {
    /// Show the endpoint's latest rollout.
    Show(RolloutNameArgs),
    /// Stop the running rollout and put live traffic back where it started.
    Abort(RolloutNameArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutNameArgs {
    /// Endpoint name.
    #[arg(short, long)]
    pub name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RolloutStartArgs {
    /// Endpoint name.
    #[arg(short, long, required = true)]
    pub name: Option<String>,
    /// The deployment that ends with 100% of live traffic.
    #[arg(long, required = true, value_name = "DEPLOYMENT")]
    pub to: Option<String>,
    /// Percent of live traffic for the deployment at each step: increasing, ending at 100
    /// [default: 10,25,50,100].
    #[arg(long, value_name = "PERCENTS")]
    pub steps: Option<String>,
    /// How long each step runs before its gates are checked: 30s, 5m, 1h, or seconds; whole
    /// seconds, at least 1 [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Largest share of the deployment's requests that may fail in a step: 1% or 0.01
    /// [default: 1%].
    #[arg(long, value_name = "RATE")]
    pub max_error_rate: Option<String>,
    /// Largest p99 latency of the deployment in a step, in milliseconds [default: no limit].
    #[arg(long, value_name = "MS")]
    pub max_p99_latency_ms: Option<String>,
    /// Smallest share of mirrored answers that must agree with the live ones before the first
    /// step: 99% or 0.99; mirror traffic to the deployment first [default: not checked].
    #[arg(long, value_name = "SHARE")]
    pub min_agreement: Option<String>,
    /// Requests the deployment must serve in a step before its gates are judged [default: 10].
    #[arg(long, value_name = "N")]
    pub min_requests: Option<String>,
    /// Return once the rollout started, without following it to the end.
    #[arg(long)]
    pub no_wait: bool,
}

impl Row for Rollout {
    const HEADERS: &'static [&'static str] = &["endpoint", "to", "state", "step", "weight", "message"];
    fn row(&self) -> Vec<String> {
        vec![
            self.endpoint.clone(),
            self.spec.to.clone(),
            self.state.as_str().to_owned(),
            step_label(self),
            format!("{}%", current_weight(self)),
            self.message.clone().unwrap_or_default(),
        ]
    }
}

/// `2/4`: the step running now (or the last one run), counted from 1.
fn step_label(r: &Rollout) -> String {
    format!("{}/{}", (r.step_index + 1).min(r.spec.steps.len()), r.spec.steps.len())
}

/// The percent of live traffic the target deployment has now.
fn current_weight(r: &Rollout) -> u32 {
    match r.state {
        RolloutState::Running => r.spec.steps.get(r.step_index).copied().unwrap_or(0),
        RolloutState::Succeeded => 100,
        RolloutState::RolledBack | RolloutState::Aborted => r.original_traffic.get(&r.spec.to).copied().unwrap_or(0),
    }
}

pub(crate) async fn run(ctx: &Ctx, args: RolloutArgs) -> Result<(), CliError> {
    match args.action {
        Some(RolloutAction::Show(a)) => print_one(ctx.output, &ctx.client.get_rollout(&a.name).await?),
        Some(RolloutAction::Abort(a)) => print_one(ctx.output, &ctx.client.abort_rollout(&a.name).await?),
        None => start(ctx, args.start).await,
    }
}

async fn start(ctx: &Ctx, args: RolloutStartArgs) -> Result<(), CliError> {
    let (Some(name), Some(to)) = (args.name.clone(), args.to.clone()) else {
        return Err(CliError::usage("--name and --to are required to start a rollout"));
    };
    let spec = spec_from(to, &args)?;
    let started = ctx
        .client
        .start_rollout(&name, &spec)
        .await
        .map_err(|e| CliError::client_from(&format!("rollout of {name}"), e))?;
    if args.no_wait {
        return print_one(ctx.output, &started);
    }
    let done = follow(ctx, &name, started).await?;
    print_one(ctx.output, &done)?;
    outcome(&done)
}

/// The spec from the flags; every flag left out keeps the server's default.
fn spec_from(to: String, args: &RolloutStartArgs) -> Result<RolloutSpec, CliError> {
    let mut spec: RolloutSpec = serde_json::from_value(serde_json::json!({ "to": to }))
        .map_err(|e| CliError::usage(format!("cannot build the rollout: {e}")))?;
    if let Some(s) = &args.steps {
        spec.steps = parse_steps(s)?;
    }
    if let Some(s) = &args.interval {
        spec.interval_s = parse_interval(s)?;
    }
    if let Some(s) = &args.max_error_rate {
        spec.max_error_rate = parse_share("--max-error-rate", s)?;
    }
    if let Some(s) = &args.max_p99_latency_ms {
        spec.max_p99_latency_ms = Some(parse_latency(s)?);
    }
    if let Some(s) = &args.min_agreement {
        spec.min_agreement = Some(parse_share("--min-agreement", s)?);
    }
    if let Some(s) = &args.min_requests {
        spec.min_requests = s.trim().parse().map_err(|_| {
            CliError::usage(format!("--min-requests: {s:?} is not a whole number of requests, e.g. 100"))
        })?;
    }
    Ok(spec)
}

/// Polls the endpoint's latest rollout every 500 ms until it ends, printing one line on stderr
/// per new step when stderr is a terminal.
async fn follow(ctx: &Ctx, endpoint: &str, first: Rollout) -> Result<Rollout, CliError> {
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    // A rollout takes at least its steps' intervals; past that, the usual patience.
    let steps = first.spec.steps.len() as u64;
    let give_up = GIVE_UP_AFTER + Duration::from_secs(first.spec.interval_s.saturating_mul(steps));
    let id = first.id.clone();
    let mut rollout = first;
    let mut shown = None;
    loop {
        if rollout.id != id {
            return Err(CliError::Failed(format!(
                "rollout {id} of {endpoint} was followed by rollout {}: `sluice online-endpoint rollout show --name {endpoint}` shows it",
                rollout.id
            )));
        }
        if rollout.state.is_terminal() {
            return Ok(rollout);
        }
        if progress && shown != Some(rollout.step_index) {
            shown = Some(rollout.step_index);
            eprintln!("step {}: {} at {}%", step_label(&rollout), rollout.spec.to, current_weight(&rollout));
        }
        if started.elapsed() > give_up {
            return Err(CliError::Failed(format!(
                "gave up waiting for the rollout of {endpoint} after {} minutes; it goes on on the server: \
                 `sluice online-endpoint rollout show --name {endpoint}` shows it",
                give_up.as_secs() / 60
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        rollout = ctx.client.get_rollout(endpoint).await?;
    }
}

/// Success for a rollout that ended with all traffic on its deployment; otherwise why not.
fn outcome(r: &Rollout) -> Result<(), CliError> {
    let what = match r.state {
        RolloutState::Running | RolloutState::Succeeded => return Ok(()),
        RolloutState::RolledBack => "rolled back",
        RolloutState::Aborted => "aborted",
    };
    let why = r.message.as_deref().or_else(|| r.history.iter().rev().find_map(|s| s.reason.as_deref()));
    Err(CliError::Failed(match why.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!("rollout {what}: {m}"),
        None => format!("rollout {what}"),
    }))
}

/// `--steps 10,25,50,100`: whole percents from 1 to 100, increasing, ending at 100.
fn parse_steps(text: &str) -> Result<Vec<u32>, CliError> {
    let bad = |m: String| CliError::usage(format!("--steps: {m}"));
    let mut steps: Vec<u32> = Vec::new();
    for part in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()) {
        let step = part
            .trim_end_matches('%')
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| bad(format!("{part:?}: each step is a whole percent from 1 to 100")))?;
        if steps.last().is_some_and(|last| *last >= step) {
            return Err(bad(format!("{text:?}: the steps must increase, e.g. 10,25,50,100")));
        }
        steps.push(step);
    }
    match steps.last() {
        None => Err(bad("expected percents such as 10,25,50,100".into())),
        Some(100) => Ok(steps),
        Some(_) => Err(bad(format!("{text:?}: the last step must be 100"))),
    }
}

/// `--interval`: `500ms`, `30s`, `5m`, `1h` or bare seconds, as whole seconds (at least 1).
fn parse_interval(text: &str) -> Result<u64, CliError> {
    let bad = |m: String| CliError::usage(format!("--interval: {m}"));
    let t = text.trim();
    let (number, unit_ms) = [("ms", 1.0), ("s", 1e3), ("m", 60e3), ("h", 3600e3)]
        .into_iter()
        .find_map(|(suffix, ms)| t.strip_suffix(suffix).map(|n| (n.trim(), ms)))
        .unwrap_or((t, 1e3));
    let value = number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && !number.is_empty())
        .ok_or_else(|| bad(format!("{text:?} is not a duration: write e.g. 30s, 5m, 1h or a number of seconds")))?;
    let ms = (value * unit_ms).round();
    if ms < 1000.0 {
        return Err(bad(format!("{text:?} is less than a second: the interval is whole seconds, at least 1s")));
    }
    if ms % 1000.0 != 0.0 {
        return Err(bad(format!("{text:?} is not a whole number of seconds")));
    }
    if ms > 1e15 {
        return Err(bad(format!("{text:?} is too long")));
    }
    Ok((ms / 1000.0) as u64)
}

/// A share from 0 to 1, written `1%` or `0.01`; `flag` names the option in errors.
fn parse_share(flag: &str, text: &str) -> Result<f64, CliError> {
    let bad = |m: String| CliError::usage(format!("{flag}: {m}"));
    let t = text.trim();
    let (number, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let value = number.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
        bad(format!("{text:?} is not a share: write a percent such as 1% or a fraction such as 0.01"))
    })?;
    let share = if percent { value / 100.0 } else { value };
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else if percent {
        Err(bad(format!("{text:?}: expected a percent from 0% to 100%")))
    } else {
        Err(bad(format!("{text:?}: a bare number is a fraction from 0 to 1; write {text}% for a percent")))
    }
}

/// `--max-p99-latency-ms`: a positive number of milliseconds.
fn parse_latency(text: &str) -> Result<f64, CliError> {
    text.trim().trim_end_matches("ms").parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(|| {
        CliError::usage(format!("--max-p99-latency-ms: {text:?} is not a positive number of milliseconds"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug, CliError>) -> String {
        r.unwrap_err().render()
    }

    #[test]
    fn intervals_take_units_and_are_whole_seconds() {
        for (text, secs) in
            [("30s", 30), ("5m", 300), ("1h", 3600), ("90", 90), ("1000ms", 1), ("1.5m", 90), (" 2 s", 2)]
        {
            assert_eq!(parse_interval(text).unwrap(), secs, "{text}");
        }
        assert_eq!(
            err(parse_interval("500ms")),
            "error: --interval: \"500ms\" is less than a second: the interval is whole seconds, at least 1s"
        );
        assert!(err(parse_interval("0")).contains("less than a second"));
        assert!(err(parse_interval("1500ms")).contains("not a whole number of seconds"));
        for bad in ["", "s", "fast", "-5s", "5d", "inf"] {
            assert!(err(parse_interval(bad)).starts_with("error: --interval: "), "{bad}");
        }
    }

    #[test]
    fn shares_are_percents_or_fractions() {
        assert_eq!(parse_share("--max-error-rate", "1%").unwrap(), 0.01);
        assert_eq!(parse_share("--max-error-rate", "0.01").unwrap(), 0.01);
        assert_eq!(parse_share("--min-agreement", "99%").unwrap(), 0.99);
        assert_eq!(parse_share("--min-agreement", "0.99").unwrap(), 0.99);
        assert_eq!(parse_share("--min-agreement", "100%").unwrap(), 1.0);
        assert_eq!(
            err(parse_share("--max-error-rate", "5")),
            "error: --max-error-rate: \"5\": a bare number is a fraction from 0 to 1; write 5% for a percent"
        );
        assert!(err(parse_share("--min-agreement", "120%")).contains("from 0% to 100%"));
        for bad in ["", "%", "lots", "NaN", "-1%"] {
            assert!(err(parse_share("--min-agreement", bad)).starts_with("error: --min-agreement: "), "{bad}");
        }
    }

    #[test]
    fn steps_increase_to_100() {
        assert_eq!(parse_steps("10,25,50,100").unwrap(), [10, 25, 50, 100]);
        assert_eq!(parse_steps("50% 100%").unwrap(), [50, 100]);
        assert_eq!(parse_steps("100").unwrap(), [100]);
        assert!(err(parse_steps("10,50")).contains("the last step must be 100"));
        assert!(err(parse_steps("50,25,100")).contains("must increase"));
        assert!(err(parse_steps("0,100")).contains("whole percent from 1 to 100"));
        assert!(err(parse_steps("")).starts_with("error: --steps: "));
    }

    #[test]
    fn latency_is_positive_milliseconds() {
        assert_eq!(parse_latency("250").unwrap(), 250.0);
        assert_eq!(parse_latency("12.5ms").unwrap(), 12.5);
        assert!(err(parse_latency("0")).starts_with("error: --max-p99-latency-ms: "));
    }

    fn rollout(state: &str, step_index: usize, message: Option<&str>) -> Rollout {
        serde_json::from_value(serde_json::json!({
            "id": "r1", "endpoint": "ep", "to": "green", "steps": [10, 25, 50, 100], "interval_s": 60,
            "max_error_rate": 0.01, "min_requests": 10, "state": state, "step_index": step_index,
            "original_traffic": {"blue": 90, "green": 10}, "message": message,
            "history": [{"weight": 10, "requests": 50, "errors": 9, "error_rate": 0.18, "p99_ms": null,
                "passed": false, "reason": "error rate 18% above 1%", "finished_at": "t"}],
            "created_at": "t", "updated_at": "t"
        }))
        .unwrap()
    }

    #[test]
    fn rows_show_step_and_weight() {
        assert_eq!(rollout("Running", 1, None).row(), ["ep", "green", "Running", "2/4", "25%", ""]);
        assert_eq!(rollout("Succeeded", 3, Some("done")).row()[3..], ["4/4", "100%", "done"]);
        assert_eq!(rollout("RolledBack", 2, None).row()[3..5], ["3/4", "10%"]);
    }

    #[test]
    fn only_success_exits_0() {
        assert!(outcome(&rollout("Succeeded", 3, None)).is_ok());
        let e = outcome(&rollout("RolledBack", 0, Some("p99 80ms above 50ms"))).unwrap_err();
        assert_eq!(e.render(), "error: rollout rolled back: p99 80ms above 50ms");
        let e = outcome(&rollout("RolledBack", 0, None)).unwrap_err();
        assert_eq!(e.render(), "error: rollout rolled back: error rate 18% above 1%");
        assert_eq!(outcome(&rollout("Aborted", 0, Some("aborted by a user"))).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn left_out_flags_keep_the_server_defaults() {
        let args = RolloutStartArgs {
            name: Some("ep".into()),
            to: Some("green".into()),
            steps: None,
            interval: Some("2m".into()),
            max_error_rate: None,
            max_p99_latency_ms: None,
            min_agreement: Some("99%".into()),
            min_requests: None,
            no_wait: false,
        };
        let spec = spec_from("green".into(), &args).unwrap();
        assert_eq!((spec.steps, spec.interval_s, spec.max_error_rate), (vec![10, 25, 50, 100], 120, 0.01));
        assert_eq!((spec.min_agreement, spec.max_p99_latency_ms, spec.min_requests), (Some(0.99), None, 10));
    }
}
