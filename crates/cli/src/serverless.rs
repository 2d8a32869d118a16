//! `sluice model-catalog list|show|create|delete` and
//! `sluice serverless-endpoint create|show|list|delete|get-credentials|regenerate-keys|usage`.

use crate::endpoint::{KeyTypeArg, NameArgs};
use crate::error::CliError;
use crate::output::{Row, print_list, print_one};
use crate::spec_file::SpecDoc;
use crate::wait::{Goal, Provisioned, wait_for};
use crate::{Ctx, confirm};
use sluice_api::endpoint::{EndpointKeys, KeyType};
use sluice_api::serverless::{
    CatalogModel, CatalogModelCreate, CatalogTask, ServerlessEndpoint, ServerlessEndpointSpec, ServerlessUsage,
};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CatalogCommand {
    /// List the models serverless endpoints can serve.
    List,
    /// Show one catalog model (by id, name or azureml://registries/.../models/NAME).
    Show(NameArgs),
    /// Add your own model from a path on the server's machine: a .gguf file or a Hugging Face
    /// safetensors folder of a llama-architecture model (chat-completion, text-generation; the
    /// folder is converted to GGUF when its engine first starts) or a sentence-transformers
    /// folder (embeddings).
    Create(CatalogCreateArgs),
    /// Remove a model you added (refused while an endpoint uses it).
    Delete(CatalogDeleteArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CatalogCreateArgs {
    #[arg(short, long)]
    pub name: String,
    /// Absolute path on the server's machine (a relative path is made absolute here).
    #[arg(short, long)]
    pub path: PathBuf,
    /// chat-completion, text-generation or embeddings.
    #[arg(long)]
    pub task: String,
    #[arg(long)]
    pub context_length: Option<u32>,
    #[arg(long, default_value_t = 0.0)]
    pub price_per_1k_input_tokens: f64,
    #[arg(long, default_value_t = 0.0)]
    pub price_per_1k_output_tokens: f64,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CatalogDeleteArgs {
    #[arg(short, long)]
    pub name: String,
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServerlessCommand {
    /// Create a serverless endpoint from Azure ML YAML (`name`, `model_id`); waits until its
    /// model's engine is ready.
    Create(ServerlessCreateArgs),
    Show(NameArgs),
    List,
    /// Delete an endpoint (its model's engine stops when no endpoint uses it).
    Delete(CatalogDeleteArgs),
    /// Print the endpoint's keys.
    GetCredentials(NameArgs),
    /// Replace the primary or secondary key with a fresh one.
    RegenerateKeys(crate::endpoint::RegenerateKeysArgs),
    /// Tokens used per key and hour, and their cost at the catalog model's prices.
    Usage(ServerlessUsageArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerlessCreateArgs {
    /// Azure ML serverless endpoint YAML.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Endpoint name (overrides the file's `name`).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Catalog model (overrides the file's `model_id`).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Override a field: PATH=VALUE, e.g. `rate_limits.tokens_per_minute=1000`; repeatable.
    #[arg(long, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServerlessUsageArgs {
    #[arg(short, long)]
    pub name: String,
    /// RFC 3339 time or date; records from the hour containing it on.
    #[arg(long)]
    pub since: Option<String>,
}

impl Row for CatalogModel {
    const HEADERS: &'static [&'static str] =
        &["id", "name", "task", "context_length", "price_1k_input", "price_1k_output", "source"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.task.as_str().to_owned(),
            self.context_length.to_string(),
            self.price_per_1k_input_tokens.to_string(),
            self.price_per_1k_output_tokens.to_string(),
            self.source.clone(),
        ]
    }
}

impl Row for ServerlessEndpoint {
    const HEADERS: &'static [&'static str] = &["name", "model", "task", "provisioning_state", "scoring_uri"];
    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.catalog_model.clone(),
            self.task.as_str().to_owned(),
            self.provisioning_state.clone(),
            self.scoring_uri.clone(),
        ]
    }
}

impl Row for ServerlessUsage {
    const HEADERS: &'static [&'static str] =
        &["endpoint", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost"];
    fn row(&self) -> Vec<String> {
        vec![
            self.endpoint.clone(),
            self.requests.to_string(),
            self.prompt_tokens.to_string(),
            self.completion_tokens.to_string(),
            self.total_tokens.to_string(),
            format!("{:.6}", self.cost),
        ]
    }
}

impl Row for EndpointKeys {
    const HEADERS: &'static [&'static str] = &["primaryKey", "secondaryKey"];
    fn row(&self) -> Vec<String> {
        vec![self.primary_key.clone(), self.secondary_key.clone()]
    }
}

impl Provisioned for ServerlessEndpoint {
    fn state(&self) -> &str {
        &self.provisioning_state
    }
    fn message(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}

pub(crate) async fn run_catalog(ctx: &Ctx, cmd: CatalogCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        CatalogCommand::List => print_list(ctx.output, &client.list_catalog().await?),
        CatalogCommand::Show(a) => print_one(ctx.output, &client.get_catalog_model(&a.name).await?),
        CatalogCommand::Create(a) => {
            let task = CatalogTask::parse(&a.task).ok_or_else(|| {
                CliError::usage(format!("--task {:?}: expected chat-completion, text-generation or embeddings", a.task))
            })?;
            let path = std::path::absolute(&a.path)
                .map_err(|e| CliError::usage(format!("--path {}: {e}", a.path.display())))?;
            let body = CatalogModelCreate {
                schema: None,
                name: a.name,
                path: path.display().to_string(),
                task,
                context_length: a.context_length,
                price_per_1k_input_tokens: a.price_per_1k_input_tokens,
                price_per_1k_output_tokens: a.price_per_1k_output_tokens,
                description: a.description,
            };
            print_one(ctx.output, &client.add_catalog_model(&body).await?)
        }
        CatalogCommand::Delete(a) => {
            confirm(&format!("remove {} from the model catalog", a.name), a.yes)?;
            client.remove_catalog_model(&a.name).await?;
            Ok(())
        }
    }
}

pub(crate) async fn run_endpoint(ctx: &Ctx, cmd: ServerlessCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match cmd {
        ServerlessCommand::Create(args) => create(ctx, args).await,
        ServerlessCommand::Show(a) => print_one(ctx.output, &client.get_serverless_endpoint(&a.name).await?),
        ServerlessCommand::List => print_list(ctx.output, &client.list_serverless_endpoints().await?),
        ServerlessCommand::Delete(a) => {
            confirm(&format!("delete serverless endpoint {}", a.name), a.yes)?;
            client.delete_serverless_endpoint(&a.name).await?;
            Ok(())
        }
        ServerlessCommand::GetCredentials(a) => print_one(ctx.output, &client.serverless_credentials(&a.name).await?),
        ServerlessCommand::RegenerateKeys(a) => {
            let key_type = match a.key_type {
                KeyTypeArg::Primary => KeyType::Primary,
                KeyTypeArg::Secondary => KeyType::Secondary,
            };
            client.regenerate_serverless_keys(&a.name, key_type).await?;
            Ok(())
        }
        ServerlessCommand::Usage(a) => {
            print_one(ctx.output, &client.serverless_usage(&a.name, a.since.as_deref()).await?)
        }
    }
}

async fn create(ctx: &Ctx, args: ServerlessCreateArgs) -> Result<(), CliError> {
    let mut doc = match &args.file {
        Some(f) => SpecDoc::read(f)?,
        None => SpecDoc::empty("command line"),
    };
    doc.apply_sets(&args.set)?;
    if let Some(n) = &args.name {
        doc.set("name", n.as_str());
    }
    if let Some(m) = &args.model_id {
        doc.set("model_id", m.as_str());
    }
    if doc.get_str("name").is_none() || doc.get_str("model_id").is_none() {
        return Err(CliError::usage("--name and --model-id are required (or a --file with `name:` and `model_id:`)"));
    }
    let spec: ServerlessEndpointSpec = doc.typed()?;
    let created =
        ctx.client.create_serverless_endpoint(&spec).await.map_err(|e| CliError::client_from(&doc.label, e))?;
    if args.no_wait {
        return print_one(ctx.output, &created);
    }
    let what = format!("serverless endpoint {}", created.name);
    let hint = Some(format!("see `sluice serverless-endpoint show --name {}`", created.name));
    let done = wait_for(&what, Goal::Settled, hint, || ctx.client.get_serverless_endpoint(&created.name)).await?;
    print_one(ctx.output, &done.expect("Goal::Settled always returns the resource"))
}
