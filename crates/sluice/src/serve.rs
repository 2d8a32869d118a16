//! `sluice serve --file deployment.yml` (also `online-deployment create --local`): one deployment
//! in the foreground on a local port, with the same replica as the server uses, no server, no
//! auth, and a restart whenever a file of its code or model changes — for iterating on a
//! scoring script before deploying it.

use sluice_api::ModelTypeWire;
use sluice_api::deployment::{ModelField, OnlineDeploymentSpec};
use sluice_domain::{EnvironmentChoice, ValidEnvironment};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime};

/// The port a local run listens on, as Azure's local endpoints and azmlinfsrv use.
pub const DEFAULT_PORT: u16 = 5001;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// An Azure ML online deployment YAML with an inline model (`model: {path, type}`).
    #[arg(short, long)]
    pub file: PathBuf,
    /// Local port (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Python for scoring scripts without a conda file.
    #[arg(long, env = "SLUICE_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// Do not restart when files change.
    #[arg(long)]
    pub no_reload: bool,
}

/// What to run, resolved from the YAML.
struct Plan {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Files whose change restarts the replica.
    watch: Vec<PathBuf>,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

pub fn main(args: ServeArgs) -> ExitCode {
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut stamp = newest(&plan.watch);
    loop {
        let mut child = match start(&plan) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if let Ok(Some(status)) = child.try_wait() {
                if args.no_reload {
                    return if status.success() { ExitCode::SUCCESS } else { ExitCode::from(1) };
                }
                eprintln!("sluice serve: the replica stopped ({status}); waiting for a file to change");
                while newest(&plan.watch) == stamp {
                    std::thread::sleep(Duration::from_millis(500));
                }
                break;
            }
            if !args.no_reload && newest(&plan.watch) != stamp {
                eprintln!("sluice serve: files changed; restarting");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
        stamp = newest(&plan.watch);
    }
}

fn start(plan: &Plan) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the sluice binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(&plan.args)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the replica: {e}"))?;
    let stdout = child.stdout.take().ok_or("no replica stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match line.strip_prefix("SLUICE_REPLICA_LISTENING ") {
                Some(addr) => println!("SLUICE_LOCAL http://{addr}/score"),
                None => println!("{line}"),
            }
        }
    });
    Ok(child)
}

/// The newest modification time among the watched trees.
fn newest(paths: &[PathBuf]) -> Option<SystemTime> {
    fn walk(p: &Path, best: &mut Option<SystemTime>) {
        let Ok(meta) = std::fs::metadata(p) else { return };
        // Files only: a folder's own time changes when Python writes __pycache__ into it.
        if meta.is_file()
            && let Ok(m) = meta.modified()
        {
            *best = (*best).max(Some(m));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(p)
        {
            for e in entries.flatten() {
                if e.file_name() != "__pycache__" {
                    walk(&e.path(), best);
                }
            }
        }
    }
    let mut best = None;
    for p in paths {
        walk(p, &mut best);
    }
    best
}

fn plan(args: &ServeArgs) -> Result<Plan, String> {
    let label = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|e| format!("{label}: cannot read: {e}"))?;
    let spec: OnlineDeploymentSpec = sluice_api::yaml::from_str(&text).map_err(|e| format!("{label}: {e}"))?;
    let dir = args.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    let Some(ModelField::Inline(model)) = &spec.model else {
        return Err(format!(
            "{label}: model: a local run needs an inline model such as `model: {{path: model, type: triton_model}}`"
        ));
    };
    let model_path = dir.join(&model.path);
    let model_path =
        model_path.canonicalize().map_err(|e| format!("{label}: model.path: {}: {e}", model_path.display()))?;
    let listen = format!("127.0.0.1:{}", args.port);
    let mut env: Vec<(String, String)> = spec.environment_variables.clone().into_iter().collect();
    let model_root = model_path.parent().unwrap_or(&model_path).display().to_string();
    env.push(("AZUREML_MODEL_DIR".into(), model_root));
    // A Python replica: what it serves, then the flags every Python replica takes.
    let python_plan = |what: Vec<String>, watch: Vec<PathBuf>| -> Result<Plan, String> {
        let python = environment_python(&spec, &dir, &args.python)?;
        let mut argv = vec!["replica-python".to_owned()];
        argv.extend(what);
        argv.extend([
            "--python".into(),
            python.display().to_string(),
            "--request-timeout-ms".into(),
            spec.request_settings.request_timeout_ms.to_string(),
            "--listen".into(),
            listen.clone(),
        ]);
        Ok(Plan { args: argv, env: env.clone(), watch })
    };
    // A custom container: its command behind `sluice replica-command`, as the server runs it.
    if let Some(environment) = spec.environment.as_ref().filter(|e| e.get("inference_config").is_some()) {
        let mut errors = Vec::new();
        let valid = sluice_api::environment::inline(environment, "environment.", &mut errors);
        let Some(container) = valid.and_then(|v| v.container) else {
            let what: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(format!("{label}: {}", what.join("; ")));
        };
        let cwd = spec.code_configuration.as_ref().map_or_else(|| model_path.clone(), |c| dir.join(&c.code));
        let timeout = spec.request_settings.request_timeout_ms;
        let argv = sluice_control::command_replica_args(&container, &cwd, timeout, 600, Some(&listen));
        return Ok(Plan { args: argv, env, watch: vec![cwd, model_path] });
    }
    if let Some(code) = &spec.code_configuration {
        let code_dir = dir.join(&code.code);
        let what = vec![
            "--code-dir".into(),
            code_dir.display().to_string(),
            "--scoring-script".into(),
            code.scoring_script.clone(),
        ];
        return python_plan(what, vec![code_dir, model_path.clone()]);
    }
    let onnx_flavor = || {
        let text = std::fs::read_to_string(model_path.join("MLmodel")).unwrap_or_default();
        serde_yaml::from_str::<serde_yaml::Value>(&text)
            .ok()
            .and_then(|d| d.get("flavors").map(|f| f.get("onnx").is_some()))
            .unwrap_or(true)
    };
    if model.model_type == Some(ModelTypeWire::MlflowModel) && !onnx_flavor() {
        return python_plan(vec!["--mlflow-model".into(), model_path.display().to_string()], vec![model_path.clone()]);
    }
    let format = match model.model_type {
        Some(ModelTypeWire::TritonModel) => "triton",
        Some(ModelTypeWire::MlflowModel) => "mlflow",
        _ => return Err(format!("{label}: a custom_model needs code_configuration with a scoring script")),
    };
    let args = vec![
        "replica".into(),
        "--model-dir".into(),
        model_path.display().to_string(),
        "--format".into(),
        format.into(),
        "--listen".into(),
        listen,
    ];
    Ok(Plan { args, env, watch: vec![model_path] })
}

/// The deployment's conda file built (once, cached in `~/.cache/sluice/envs`), else `fallback`.
fn environment_python(spec: &OnlineDeploymentSpec, dir: &Path, fallback: &Path) -> Result<PathBuf, String> {
    let Some(conda) = spec.environment.as_ref().and_then(|e| e.get("conda_file")).and_then(|c| c.as_str()) else {
        return Ok(fallback.to_owned());
    };
    let file = dir.join(conda);
    let text =
        std::fs::read_to_string(&file).map_err(|e| format!("environment.conda_file: {}: {e}", file.display()))?;
    let content: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("environment.conda_file: {}: {e}", file.display()))?;
    let mut with_content = spec.clone();
    with_content.environment = Some(serde_json::json!({ "conda_file": content }));
    with_content.endpoint_name = Some(with_content.endpoint_name.unwrap_or_else(|| "local-run".into()));
    with_content.model = Some(ModelField::Reference("azureml:local:1".into()));
    let valid = sluice_api::validate::deployment(&with_content)
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let Some(EnvironmentChoice::Inline(ValidEnvironment { pip: Some(plan), .. })) = valid.environment else {
        return Ok(fallback.to_owned());
    };
    let cache = std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sluice")))
        .unwrap_or_else(|| PathBuf::from(".sluice-cache"));
    let builder = sluice_control::EnvironmentBuilder::new(cache.join("envs"), fallback.to_owned());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    eprintln!("sluice serve: building the environment from {} (once; cached)", file.display());
    rt.block_on(builder.ensure(&plan))
}
