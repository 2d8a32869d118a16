//! `sluice online-endpoint ...`: create, update (traffic), show, list, delete, invoke and keys.

use crate::error::CliError;
use crate::output::{print_list, print_one, print_text};
use crate::rollout::{self, RolloutArgs};
use crate::spec_file::SpecDoc;
use crate::traffic::{check_sum, parse_traffic, to_yaml};
use crate::wait::{Goal, wait_for};
use crate::{Ctx, confirm};
use sluice_api::endpoint::{EndpointCredentials, KeyType, OnlineEndpoint, OnlineEndpointSpec};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EndpointCommand {
    /// Create an endpoint from a YAML file and/or flags.
    Create(EndpointCreateArgs),
    /// Change an endpoint: its traffic split, mirror, or fields from a file or --set.
    Update(EndpointUpdateArgs),
    /// Show one endpoint.
    Show(NameArgs),
    /// List endpoints.
    List,
    /// Delete an endpoint and all its deployments.
    Delete(DeleteArgs),
    /// Send a request file to the endpoint's scoring URL and print the answer.
    Invoke(InvokeArgs),
    /// Print the endpoint's keys or token.
    GetCredentials(NameArgs),
    /// Replace the primary or secondary key with a fresh one.
    RegenerateKeys(RegenerateKeysArgs),
    /// Move live traffic to a deployment step by step, rolling back when a gate fails.
    ///
    /// `rollout --name E --to D` starts a rollout and follows it until it ends (exit 1 unless it
    /// succeeds); `rollout show --name E` and `rollout abort --name E` act on the latest one.
    Rollout(RolloutArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct EndpointCreateArgs {
    /// Azure ML online endpoint YAML.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Endpoint name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// key, aml_token or aad_token (overrides the file's `auth_mode`).
    #[arg(long)]
    pub auth_mode: Option<String>,
    /// Override a field: PATH=VALUE, e.g. `description=demo`; repeatable.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Return once the server accepted the request, without waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EndpointUpdateArgs {
    /// Endpoint name (or the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// YAML whose top-level fields replace the endpoint's.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Live traffic split, e.g. "blue=90 green=10"; replaces the whole split.
    #[arg(short = 'r', long)]
    pub traffic: Option<String>,
    /// Mirrored traffic, e.g. "green=10".
    #[arg(long)]
    pub mirror_traffic: Option<String>,
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct NameArgs {
    #[arg(short, long)]
    pub name: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    #[arg(short, long)]
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InvokeArgs {
    #[arg(short, long)]
    pub name: String,
    /// JSON file to send as the request body.
    #[arg(short, long)]
    pub request_file: PathBuf,
    /// Send to this deployment instead of following the traffic split.
    #[arg(short, long)]
    pub deployment_name: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RegenerateKeysArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(long, value_enum, default_value_t = KeyTypeArg::Primary)]
    pub key_type: KeyTypeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyTypeArg {
    Primary,
    Secondary,
}

pub(crate) async fn run(ctx: &Ctx, cmd: EndpointCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        EndpointCommand::Create(args) => create(ctx, args).await,
        EndpointCommand::Update(args) => update(ctx, args).await,
        EndpointCommand::Show(args) => print_one(ctx.output, &client.get_endpoint(&args.name).await?),
        EndpointCommand::List => print_list(ctx.output, &client.list_endpoints().await?),
        EndpointCommand::Delete(args) => {
            confirm(&format!("delete online endpoint {} and all its deployments", args.name), args.yes)?;
            client.delete_endpoint(&args.name).await?;
            if !args.no_wait {
                let what = format!("online endpoint {}", args.name);
                wait_for(&what, Goal::Gone, None, || client.get_endpoint(&args.name)).await?;
            }
            Ok(())
        }
        EndpointCommand::Invoke(args) => invoke(ctx, args).await,
        EndpointCommand::GetCredentials(args) => print_one(ctx.output, &client.get_credentials(&args.name).await?),
        EndpointCommand::RegenerateKeys(args) => {
            let key_type = match args.key_type {
                KeyTypeArg::Primary => KeyType::Primary,
                KeyTypeArg::Secondary => KeyType::Secondary,
            };
            // The new keys are not printed: `get-credentials` shows them to whoever asks.
            client.regenerate_keys(&args.name, key_type).await?;
            Ok(())
        }
        EndpointCommand::Rollout(args) => rollout::run(ctx, args).await,
    }
}

async fn create(ctx: &Ctx, args: EndpointCreateArgs) -> Result<(), CliError> {
    let mut doc = match &args.file {
        Some(f) => SpecDoc::read(f)?,
        None => SpecDoc::empty("command line"),
    };
    doc.apply_sets(&args.set)?;
    if let Some(n) = &args.name {
        doc.set("name", n.as_str());
    }
    if let Some(m) = &args.auth_mode {
        doc.set("auth_mode", m.as_str());
    }
    if doc.get_str("name").is_none() && args.file.is_none() {
        return Err(CliError::usage("--name is required (or a --file with `name:`)"));
    }
    let spec = checked_endpoint(&doc)?;
    let created = ctx.client.create_endpoint(&spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    settle(ctx, created, args.no_wait).await
}

async fn update(ctx: &Ctx, args: EndpointUpdateArgs) -> Result<(), CliError> {
    // Flags and the file are checked before the server is asked anything.
    let traffic = args.traffic.as_deref().map(|t| parse_traffic("--traffic", t)).transpose()?;
    if let Some(t) = &traffic {
        let weights = t.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect();
        check_sum(&weights).map_err(|e| CliError::usage(format!("--traffic: {}", e.message)))?;
    }
    let mirror = args.mirror_traffic.as_deref().map(|t| parse_traffic("--mirror-traffic", t)).transpose()?;
    let file_doc = args.file.as_deref().map(SpecDoc::read).transpose()?;
    let name = match (&args.name, file_doc.as_ref().and_then(|d| d.get_str("name"))) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n.to_owned(),
        (None, None) => return Err(CliError::usage("--name is required (or a --file with `name:`)")),
    };
    // Start from the endpoint as it is, so fields the user does not mention keep their values.
    let current = ctx.client.get_endpoint(&name).await?;
    let mut doc = SpecDoc::from_resource(format!("online endpoint {name}"), &spec_of(&current))?;
    if let Some(file_doc) = &file_doc {
        doc.overlay(file_doc);
    }
    doc.set("name", name.as_str());
    doc.apply_sets(&args.set)?;
    if let Some(t) = &traffic {
        doc.set("traffic", to_yaml(t));
    }
    if let Some(m) = &mirror {
        doc.set("mirror_traffic", to_yaml(m));
    }
    let spec = checked_endpoint(&doc)?;
    let updated = ctx.client.update_endpoint(&name, &spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    settle(ctx, updated, args.no_wait).await
}

/// The typed spec, with every rule that needs no server checked.
fn checked_endpoint(doc: &SpecDoc) -> Result<OnlineEndpointSpec, CliError> {
    let spec: OnlineEndpointSpec = doc.typed()?;
    let mut errors = sluice_api::validate::endpoint(&spec).err().unwrap_or_default();
    if errors.iter().all(|e| !e.field.starts_with("traffic")) {
        errors.extend(check_sum(&spec.traffic).err());
    }
    if errors.is_empty() { Ok(spec) } else { Err(doc.invalid(errors)) }
}

/// Waits for the endpoint to settle (unless `no_wait`) and prints it.
async fn settle(ctx: &Ctx, sent: OnlineEndpoint, no_wait: bool) -> Result<(), CliError> {
    if no_wait {
        return print_one(ctx.output, &sent);
    }
    let done = wait_endpoint(ctx, &sent.name).await?;
    print_one(ctx.output, &done)
}

/// Polls the endpoint until `Succeeded` (or fails on `Failed`).
pub(crate) async fn wait_endpoint(ctx: &Ctx, name: &str) -> Result<OnlineEndpoint, CliError> {
    let what = format!("online endpoint {name}");
    let done = wait_for(&what, Goal::Settled, None, || ctx.client.get_endpoint(name)).await?;
    Ok(done.expect("Goal::Settled always returns the resource"))
}

/// The spec that, sent back with PUT, leaves the endpoint as it is.
pub(crate) fn spec_of(e: &OnlineEndpoint) -> OnlineEndpointSpec {
    let weights = |m: &std::collections::BTreeMap<String, u32>| {
        m.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect()
    };
    OnlineEndpointSpec {
        schema: None,
        name: e.name.clone(),
        description: e.description.clone(),
        tags: e.tags.clone(),
        auth_mode: e.auth_mode,
        traffic: weights(&e.traffic),
        mirror_traffic: weights(&e.mirror_traffic),
        compute: e.compute.clone(),
        identity: e.identity.clone(),
        public_network_access: e.public_network_access.clone(),
        kind: e.kind.clone(),
    }
}

async fn invoke(ctx: &Ctx, args: InvokeArgs) -> Result<(), CliError> {
    let file = args.request_file.display();
    let body = std::fs::read(&args.request_file).map_err(|e| CliError::usage(format!("{file}: cannot read: {e}")))?;
    let key = match ctx.client.get_credentials(&args.name).await? {
        EndpointCredentials::Keys(k) => k.primary_key,
        EndpointCredentials::Token(t) => t.access_token,
    };
    let answer = ctx.client.invoke(&args.name, &key, body, "application/json", args.deployment_name.as_deref()).await?;
    if !answer.is_success() {
        let text = answer.text().split_whitespace().collect::<Vec<_>>().join(" ");
        return Err(CliError::Failed(format!("online endpoint {} answered HTTP {}: {text}", args.name, answer.status)));
    }
    print_text(&answer.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> SpecDoc {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoint.yml");
        std::fs::write(&path, text).unwrap();
        let mut d = SpecDoc::read(&path).unwrap();
        d.label = "endpoint.yml".into();
        d
    }

    #[test]
    fn endpoint_rules_are_checked_locally_naming_file_and_field() {
        assert!(checked_endpoint(&doc("name: iris-ep\nauth_mode: key\n")).is_ok());
        let text = checked_endpoint(&doc("name: 1bad\n")).unwrap_err().render();
        assert!(text.starts_with("error: endpoint.yml: name: invalid name \"1bad\""), "{text}");
        let text = checked_endpoint(&doc("name: ep1\ntraffic: {blue: 90}\n")).unwrap_err().render();
        assert!(text.starts_with("error: endpoint.yml: traffic: traffic weights sum to 90"), "{text}");
        let text =
            checked_endpoint(&doc("name: x\ntraffic: {blue: 100}\nmirror_traffic: {blue: 60}\n")).unwrap_err().render();
        assert!(text.starts_with("error: endpoint.yml: 3 problems\n"), "{text}");
        assert!(text.contains("endpoint.yml: mirror_traffic.blue: 60: expected a percent from 0 to 50"), "{text}");
    }

    #[test]
    fn spec_of_round_trips_through_yaml() {
        let e: OnlineEndpoint = serde_json::from_value(serde_json::json!({
            "name": "ep1", "description": null, "tags": {"a": "b"}, "auth_mode": "aml_token",
            "traffic": {"blue": 100}, "mirror_traffic": {}, "provisioning_state": "Succeeded",
            "scoring_uri": "http://h/endpoints/ep1/score", "openapi_uri": "http://h/x",
            "created_at": "t", "updated_at": "t"
        }))
        .unwrap();
        let doc = SpecDoc::from_resource("online endpoint ep1", &spec_of(&e)).unwrap();
        let spec = checked_endpoint(&doc).unwrap();
        assert_eq!(spec.auth_mode, sluice_api::AuthModeWire::AmlToken);
        assert_eq!(spec.traffic.get("blue"), Some(&serde_json::Value::from(100)));
    }
}
