//! `sluice server`: wiring only. Opens the data directory, the store and the runtime library,
//! then serves the management API and the gateway on one listener.

use crate::config::{ServerArgs, Settings};
use anyhow::Context;
use sluice_backend::{LocalBackend, LocalBackendConfig};
use sluice_control::secrets::{Secrets, load_or_create_key, new_credential, write_private};
use sluice_control::{ArtifactStore, Control, Reconciler, ReplicaLaunch};
use sluice_gateway::GatewayState;
use sluice_gateway::auth::{TokenSigner, key_hash};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub fn main(args: ServerArgs, data_dir: std::path::PathBuf) -> ExitCode {
    // `SLUICE_LOG_FORMAT=json` writes one JSON object per line, for log collectors.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
    let settings = match Settings::resolve(
        args,
        data_dir,
        std::env::var_os("SLUICE_CACHE").map(Into::into),
        std::env::var_os("HOME").map(Into::into),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let traces = match crate::telemetry::traces_url(
        settings.otlp_endpoint.as_deref(),
        env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").as_deref(),
        env("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
    ) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let tracer = match traces.as_deref().map(|url| crate::telemetry::start(url, env("OTEL_SERVICE_NAME"))) {
        Some(Ok(provider)) => {
            tracing::info!(url = traces.as_deref().unwrap_or(""), "exporting traces over OTLP/HTTP");
            Some(provider)
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    let code = run(settings);
    // Sends the spans still batched; a collector that is gone costs at most its timeout.
    if let Some(provider) = tracer
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "could not flush the last traces");
    }
    code
}

fn run(settings: Settings) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the admin credential, creating and announcing it on first start.
fn admin_credential(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => {
            let token = new_credential();
            write_private(&path, token.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
            println!("Admin token (shown once; also in {}): {token}", path.display());
            Ok(token)
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let admin = admin_credential(&data_dir)?;
    let master = load_or_create_key(&data_dir.join("secrets/master.key")).context("master key")?;
    let token_key = load_or_create_key(&data_dir.join("secrets/token.key")).context("token key")?;
    let store = sluice_store::Store::open(&data_dir.join("sluice.db")).await.context("cannot open the store")?;

    let onnxruntime = match &settings.onnxruntime {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => anyhow::bail!("ONNX Runtime library {} does not exist", p.display()),
        None => {
            let cache = settings.cache_dir.clone();
            tokio::task::spawn_blocking(move || sluice_runtime::locate_or_provision_onnxruntime(&cache)).await??
        }
    };

    let backend = LocalBackend::new(LocalBackendConfig::new(data_dir.join("logs")));
    let artifacts = ArtifactStore::new(data_dir.join("artifacts"));
    let secrets = Arc::new(Secrets::new(&master));
    let tokens = TokenSigner::new(token_key.to_vec());
    let launch = ReplicaLaunch {
        program: std::env::current_exe().context("cannot find the sluice binary")?,
        onnxruntime,
        work_dir: data_dir.clone(),
        python: settings.python.clone(),
        ready_timeout: Duration::from_secs(120),
    };
    let stats = sluice_gateway::TrafficStats::default();
    let (reconciler, routes) =
        Reconciler::new(store.clone(), backend.clone(), artifacts.clone(), secrets.clone(), launch, stats.clone());

    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    let local = listener.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{local}"));
    let admissions = sluice_gateway::admission::Admissions::default();
    let control = Arc::new(Control {
        store,
        artifacts,
        backend: backend.clone(),
        secrets,
        tokens: tokens.clone(),
        admin_hash: key_hash(&admin),
        public_url: public_url.clone(),
        reconciler: reconciler.clone(),
        token_lifetime_s: settings.token_lifetime_s,
        stats: stats.clone(),
        admissions: admissions.clone(),
        prices: settings.prices.clone(),
        server_epoch: uuid::Uuid::new_v4().to_string(),
        engines: sluice_control::serverless::Engines::new(
            std::env::current_exe().context("cannot find the sluice binary")?,
            settings.cache_dir.clone(),
            data_dir.clone(),
        ),
        gateway_meter: sluice_gateway::serverless::ServerlessMeter::default(),
        body_idle_timeout: settings.body_idle_timeout,
    });
    reconciler.publish_routes().await;
    let mut settled = reconciler.settled();
    tokio::spawn(reconciler.run());
    tokio::spawn(sluice_control::run_rollouts(control.clone()));
    tokio::spawn(sluice_control::run_autoscaler(control.clone()));
    tokio::spawn(sluice_control::run_meter(control.clone()));
    tokio::spawn(sluice_control::serverless::run(control.clone()));
    let batch = sluice_control::batch::Batch::new(
        control.clone(),
        sluice_control::batch::BatchConfig {
            data_dir: data_dir.clone(),
            python: settings.python.clone(),
            worker_package: sluice_runtime::python::materialize_worker_package(&data_dir.join("run/python"))
                .map_err(|e| format!("the batch worker package cannot be written: {e}")),
            pool_workers: settings.batch_workers,
        },
    );
    batch.start();

    let mut gateway = GatewayState::new(routes, backend.endpoints(), tokens, stats, admissions);
    gateway.serverless = control.gateway_meter.clone();
    gateway.serverless_timeout = settings.serverless_request_timeout;
    gateway.body_idle_timeout = settings.body_idle_timeout;
    gateway.body_budget = sluice_gateway::BodyBudget::new((settings.request_body_memory_mib as usize) << 20);
    let gateway = gateway.with_collector(sluice_gateway::DataCollector::start(data_dir.join("data-collector")));
    // Batch endpoints' `/endpoints/{name}/jobs` is answered in front of the gateway; every other
    // data-plane request passes through to it unchanged.
    let gateway = Arc::new(gateway);
    let data_plane = sluice_gateway::router(gateway.clone())
        .layer(axum::middleware::from_fn_with_state(batch.clone(), sluice_control::batch::intercept_jobs));
    let app = sluice_control::router(control)
        .merge(batch.router())
        .route_layer(axum::middleware::from_fn(sluice_gateway::telemetry::trace_api))
        .merge(data_plane)
        .route("/healthz", axum::routing::get(|| async { "ok" }));

    // Start-up, uploads and deployment creation run code that serving does not: give those pages
    // back to the page cache now and whenever a deployment settles (see sluice_runtime::memory).
    tokio::spawn(async move {
        loop {
            let released = sluice_runtime::memory::release_code_pages();
            tracing::debug!(mappings = released.mappings, bytes = released.bytes, "code pages released");
            if settled.changed().await.is_err() {
                break;
            }
        }
    });

    // One machine-readable line for scripts and tests, then the human one.
    println!("SLUICE_LISTENING {public_url}");
    println!("Sluice is serving on {public_url} (data directory {})", data_dir.display());
    tracing::info!(addr = %local, "listening");
    // Scoring requests are answered in front of the router (sluice_gateway::with_hot_route).
    let service = sluice_gateway::with_hot_route(gateway, app);
    sluice_net::serve::serve_http1(listener, service, settings.header_read_timeout, shutdown_signal()).await?;
    tracing::info!("stopping replicas");
    backend.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
