//! Server configuration: built-in defaults < config file < environment < flags.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Default)]
pub struct ServerArgs {
    /// Address for the management API and the gateway [default: 127.0.0.1:8080]
    #[arg(long, env = "SLUICE_ADDR")]
    pub addr: Option<SocketAddr>,
    /// YAML config file (keys: addr, public_url, onnxruntime, python, token_lifetime_s, prices, batch_workers,
    /// otlp_endpoint, serverless_request_timeout_s, header_read_timeout_s, body_idle_timeout_s,
    /// request_body_memory_mib)
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// URL clients use to reach this server, for scoring_uri [default: http://<addr>]
    #[arg(long, env = "SLUICE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Python interpreter for scoring scripts [default: python3]
    #[arg(long, env = "SLUICE_PYTHON")]
    pub python: Option<PathBuf>,
    /// ONNX Runtime shared library; found or provisioned automatically when absent
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub onnxruntime: Option<PathBuf>,
    /// Batch worker processes this server runs at once, over all compute pools; also the size of
    /// the default pool a fresh install gets [default: the CPU count]
    #[arg(long, env = "SLUICE_BATCH_WORKERS")]
    pub batch_workers: Option<usize>,
    /// OpenTelemetry collector to export traces to, over OTLP/HTTP (protobuf), e.g.
    /// http://127.0.0.1:4318; `/v1/traces` is appended. Without it, the standard
    /// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables turn export on [default: off]
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    public_url: Option<String>,
    onnxruntime: Option<PathBuf>,
    python: Option<PathBuf>,
    token_lifetime_s: Option<i64>,
    #[serde(default)]
    prices: Option<sluice_api::usage::Prices>,
    batch_workers: Option<usize>,
    otlp_endpoint: Option<String>,
    serverless_request_timeout_s: Option<u64>,
    header_read_timeout_s: Option<u64>,
    body_idle_timeout_s: Option<u64>,
    request_body_memory_mib: Option<u64>,
}

/// Settings after merging every source.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub onnxruntime: Option<PathBuf>,
    pub python: PathBuf,
    pub token_lifetime_s: i64,
    pub cache_dir: PathBuf,
    /// Prices per unit for `usage show` (all 0 unless configured).
    pub prices: sluice_api::usage::Prices,
    /// Batch workers the default compute pool runs at once.
    pub batch_workers: usize,
    /// The OTLP collector's base URL from a flag or the config file.
    pub otlp_endpoint: Option<String>,
    /// The longest a serverless request may take, first token to last (a client's own
    /// `x-sluice-deadline-ms` may only shorten it).
    pub serverless_request_timeout: std::time::Duration,
    /// How long a client connection may go without sending a complete request head, from when it
    /// opened or from the end of its previous answer; then it is closed.
    pub header_read_timeout: std::time::Duration,
    /// The longest wait for the next piece of a scoring request's body; then 408.
    pub body_idle_timeout: std::time::Duration,
    /// The memory request bodies held at once may take, beyond each one's first 64 KiB; a body
    /// that does not fit is refused with 503.
    pub request_body_memory_mib: u64,
}

impl Settings {
    /// `data_dir` comes from the global `--data-dir` / `SLUICE_DATA_DIR` (the CLI shares it);
    /// `env_cache` is `SLUICE_CACHE`, `home` is `HOME`: passed in so tests give their own.
    pub fn resolve(
        args: ServerArgs,
        data_dir: PathBuf,
        env_cache: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Result<Self, String> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let token_lifetime_s =
            within("token_lifetime_s", file.token_lifetime_s.unwrap_or(24 * 3600), 1..=30 * 24 * 3600, "seconds")?;
        let batch_workers = args
            .batch_workers
            .or(file.batch_workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if !(1..=1024).contains(&batch_workers) {
            return Err(format!("batch_workers is {batch_workers}: expected 1 to 1024"));
        }
        let cache_dir = cache_dir(env_cache, home);
        if let Some(prices) = &file.prices {
            sluice_control::serverless::check_catalog_prices(prices)?;
        }
        let serverless_request_timeout_s = within(
            "serverless_request_timeout_s",
            file.serverless_request_timeout_s.unwrap_or(300),
            1..=86_400,
            "seconds",
        )?;
        let header_read_timeout_s =
            file.header_read_timeout_s.unwrap_or(sluice_net::serve::DEFAULT_HEADER_READ_TIMEOUT.as_secs());
        let header_read_timeout_s = within("header_read_timeout_s", header_read_timeout_s, 1..=3600, "seconds")?;
        let body_idle_timeout_s =
            file.body_idle_timeout_s.unwrap_or(sluice_gateway::DEFAULT_BODY_IDLE_TIMEOUT.as_secs());
        let body_idle_timeout_s = within("body_idle_timeout_s", body_idle_timeout_s, 1..=3600, "seconds")?;
        let request_body_memory_mib = within(
            "request_body_memory_mib",
            file.request_body_memory_mib.unwrap_or_else(default_body_memory_mib),
            128..=1 << 20,
            "(one body may be 100 MiB)",
        )?;
        Ok(Self {
            addr: args.addr.or(file.addr).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            public_url: args.public_url.or(file.public_url),
            onnxruntime: args.onnxruntime.or(file.onnxruntime),
            python: args.python.or(file.python).unwrap_or_else(|| PathBuf::from("python3")),
            token_lifetime_s,
            cache_dir,
            prices: file
                .prices
                .unwrap_or_else(|| sluice_api::usage::Prices { currency: "USD".into(), ..Default::default() }),
            batch_workers,
            otlp_endpoint: args.otlp_endpoint.or(file.otlp_endpoint),
            serverless_request_timeout: std::time::Duration::from_secs(serverless_request_timeout_s),
            header_read_timeout: std::time::Duration::from_secs(header_read_timeout_s),
            body_idle_timeout: std::time::Duration::from_secs(body_idle_timeout_s),
            request_body_memory_mib,
        })
    }
}

/// Where downloads and built environments are kept: `SLUICE_CACHE` (`env_cache`), else
/// `$HOME/.cache/sluice`, else `.sluice-cache`.
pub fn cache_dir(env_cache: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    env_cache.or_else(|| home.map(|h| h.join(".cache/sluice"))).unwrap_or_else(|| PathBuf::from(".sluice-cache"))
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let de = serde_yaml::Deserializer::from_str(&text);
    serde::Deserialize::deserialize(de).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// `value` of the config file's `key` when it is in `range`, else the error that says so.
fn within<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, String> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(format!("config {key} is {value}: expected {} to {} {unit}", range.start(), range.end()))
}

/// A quarter of the machine's memory, from 128 MiB to 16 GiB (1 GiB when it cannot be read).
fn default_body_memory_mib() -> u64 {
    sluice_backend::memory_total_bytes().map_or(1024, |bytes| (bytes >> 22).clamp(128, 16 << 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "addr: 127.0.0.1:9000\npublic_url: http://sluice.example\n").unwrap();
        let args = ServerArgs {
            addr: Some("127.0.0.1:7000".parse().unwrap()),
            config: Some(file.clone()),
            ..Default::default()
        };
        let s = Settings::resolve(args, "d".into(), None, Some("/home/u".into())).unwrap();
        assert_eq!(s.addr.port(), 7000);
        assert_eq!(s.public_url.as_deref(), Some("http://sluice.example"));
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/sluice"));
        let s = Settings::resolve(ServerArgs::default(), "d".into(), Some("/c".into()), None).unwrap();
        assert_eq!((s.addr.port(), s.cache_dir.clone()), (8080, PathBuf::from("/c")));
    }

    #[test]
    fn built_in_catalog_prices_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        let resolve = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Settings::resolve(ServerArgs { config: Some(file.clone()), ..Default::default() }, "d".into(), None, None)
        };
        let ok = resolve("prices:\n  catalog:\n    SmolLM2-135M-Instruct: {input_per_1k: 0.5, output_per_1k: 1.5}\n")
            .unwrap();
        assert_eq!(ok.prices.catalog["SmolLM2-135M-Instruct"].output_per_1k, 1.5);
        let err = resolve("prices:\n  catalog:\n    gpt-9: {input_per_1k: 1, output_per_1k: 1}\n").unwrap_err();
        assert!(
            err.contains("\"gpt-9\" is not a built-in catalog model") && err.contains("smollm2-135m-instruct"),
            "{err}"
        );
        let err =
            resolve("prices:\n  catalog:\n    all-MiniLM-L6-v2: {input_per_1k: -1, output_per_1k: 0}\n").unwrap_err();
        assert!(err.contains("input_per_1k is -1"), "{err}");
        let err = resolve("prices:\n  catalog:\n    all-MiniLM-L6-v2: {input: 1}\n").unwrap_err();
        assert!(err.contains("unknown field `input`"), "{err}");
    }

    #[test]
    fn bad_config_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "adr: 1\n").unwrap();
        let err =
            Settings::resolve(ServerArgs { config: Some(file.clone()), ..Default::default() }, "d".into(), None, None)
                .unwrap_err();
        assert!(err.contains("unknown field `adr`"), "{err}");
        let err = Settings::resolve(
            ServerArgs { config: Some(dir.path().join("missing")), ..Default::default() },
            "d".into(),
            None,
            None,
        )
        .unwrap_err();
        assert!(err.contains("cannot read config file"), "{err}");
        for bad in ["127", "1048577"] {
            std::fs::write(&file, format!("request_body_memory_mib: {bad}\n")).unwrap();
            let args = ServerArgs { config: Some(file.clone()), ..Default::default() };
            let err = Settings::resolve(args, "d".into(), None, None).unwrap_err();
            assert!(
                err.starts_with(&format!("config request_body_memory_mib is {bad}: expected 128 to 1048576")),
                "{err}"
            );
        }
        for key in ["header_read_timeout_s", "body_idle_timeout_s"] {
            for bad in ["0", "3601"] {
                std::fs::write(&file, format!("{key}: {bad}\n")).unwrap();
                let args = ServerArgs { config: Some(file.clone()), ..Default::default() };
                let err = Settings::resolve(args, "d".into(), None, None).unwrap_err();
                assert_eq!(err, format!("config {key} is {bad}: expected 1 to 3600 seconds"));
            }
        }
        std::fs::write(&file, "header_read_timeout_s: 5\nbody_idle_timeout_s: 7\n").unwrap();
        let args = ServerArgs { config: Some(file.clone()), ..Default::default() };
        let settings = Settings::resolve(args, "d".into(), None, None).unwrap();
        assert_eq!(settings.header_read_timeout, std::time::Duration::from_secs(5));
        assert_eq!(settings.body_idle_timeout, std::time::Duration::from_secs(7));
    }
}
