//! A fake Sluice server: just enough state for the CLI's flows, every request recorded.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct World {
    /// `METHOD path` of every request, oldest first.
    pub log: Vec<String>,
    pub models: BTreeMap<(String, String), Value>,
    pub endpoints: BTreeMap<String, Value>,
    pub deployments: BTreeMap<(String, String), Value>,
    /// Bodies of deployment creates and updates.
    pub deployment_bodies: Vec<Value>,
    /// The latest rollout of each endpoint.
    pub rollouts: BTreeMap<String, Value>,
    /// Bodies of rollout starts.
    pub rollout_bodies: Vec<Value>,
}

pub struct FakeServer {
    pub url: String,
    pub world: Arc<Mutex<World>>,
}

impl FakeServer {
    pub async fn start() -> Self {
        let world = Arc::new(Mutex::new(World::default()));
        let app = axum::Router::new().fallback(handle).with_state(world.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, world }
    }

    pub fn log(&self) -> Vec<String> {
        self.world.lock().unwrap().log.clone()
    }
}

fn answer(status: u16, body: Value) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    (status, [("content-type", "application/json")], Body::from(body.to_string())).into_response()
}

fn not_found(what: &str) -> Response {
    answer(404, json!({"error": {"code": "NotFound", "message": format!("{what} not found")}}))
}

/// Marks a resource that was just created or updated as settled, as a reconciler would; a
/// deployment asking for 3 instances fails.
fn settle(resource: &mut Value) {
    let state = resource["provisioning_state"].as_str().unwrap_or("").to_owned();
    if state == "Creating" || state == "Updating" {
        let failed = resource.get("instance_count") == Some(&json!(3));
        resource["provisioning_state"] = json!(if failed { "Failed" } else { "Succeeded" });
        if failed {
            resource["message"] = json!("replica exited: out of memory");
        }
    }
}

/// Moves a running rollout on by one step, as the server's controller would after an interval:
/// to the next step, to `Succeeded` after the last, or `RolledBack` when `to` is `red` (whose
/// error rate is always too high).
fn advance(rollout: &mut Value, endpoint: Option<&mut Value>) {
    if rollout["state"] != "Running" {
        return;
    }
    let to = rollout["to"].as_str().unwrap_or("").to_owned();
    let index = rollout["step_index"].as_u64().unwrap_or(0);
    let steps = rollout["steps"].as_array().map_or(0, Vec::len) as u64;
    if to == "red" {
        rollout["state"] = json!("RolledBack");
        rollout["message"] = json!("error rate 0.5 above 0.01 at 10%");
    } else if index + 1 < steps {
        rollout["step_index"] = json!(index + 1);
    } else {
        rollout["state"] = json!("Succeeded");
        if let Some(ep) = endpoint {
            ep["traffic"] = json!({ to: 100 });
        }
    }
}

fn conflict(message: &str) -> Response {
    answer(409, json!({"error": {"code": "Conflict", "message": message}}))
}

async fn handle(State(world): State<Arc<Mutex<World>>>, request: Request) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes = to_bytes(request.into_body(), usize::MAX).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut w = world.lock().unwrap();
    w.log.push(format!("{method} {path}"));
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["endpoints", ep, "score"] = segs.as_slice() {
        if auth.as_deref() != Some("Bearer key-1") {
            return answer(401, json!({"message": "bad key"}));
        }
        return answer(200, json!({"endpoint": ep, "echo": body}));
    }
    if auth.as_deref() != Some("Bearer admin") {
        return answer(401, json!({"error": {"code": "Unauthorized", "message": "missing or wrong admin token"}}));
    }
    let ["api", "v1", "workspaces", "default", rest @ ..] = segs.as_slice() else { return not_found("route") };
    match (method.as_str(), rest) {
        ("POST", ["artifacts"]) => {
            let sum = bytes.iter().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
            answer(
                201,
                json!({"artifact": format!("sha256:{sum:016x}"), "path": "model", "files": 1, "bytes": bytes.len()}),
            )
        }
        ("PUT", ["models", name, "versions", version]) => {
            let key = (name.to_string(), version.to_string());
            if w.models.contains_key(&key) {
                return answer(409, json!({"error": {"code": "Conflict", "message": "version exists"}}));
            }
            let model = json!({"id": format!("azureml:{name}:{version}"), "name": name, "version": version,
                "type": body["type"], "artifact": body["artifact"], "path": "model",
                "description": body["description"], "tags": {}, "created_at": "t"});
            w.models.insert(key, model.clone());
            answer(201, model)
        }
        ("GET", ["models", name, "versions"]) => {
            answer(200, Value::Array(w.models.iter().filter(|(k, _)| k.0 == *name).map(|(_, v)| v.clone()).collect()))
        }
        ("GET", ["models", name, "versions", version]) => {
            match w.models.get(&(name.to_string(), version.to_string())) {
                Some(m) => answer(200, m.clone()),
                None => not_found("model"),
            }
        }
        ("POST", ["online-endpoints"]) => {
            let mut ep = body.clone();
            ep["provisioning_state"] = json!("Creating");
            for (k, v) in [
                ("scoring_uri", "http://x/score"),
                ("openapi_uri", "http://x/swagger.json"),
                ("created_at", "t"),
                ("updated_at", "t"),
            ] {
                ep[k] = json!(v);
            }
            for k in ["traffic", "mirror_traffic", "tags"] {
                if ep.get(k).is_none() {
                    ep[k] = json!({});
                }
            }
            w.endpoints.insert(body["name"].as_str().unwrap().to_owned(), ep.clone());
            answer(201, ep)
        }
        ("PUT", ["online-endpoints", name]) => {
            let Some(ep) = w.endpoints.get_mut(*name) else { return not_found("endpoint") };
            for k in ["description", "traffic", "mirror_traffic", "auth_mode"] {
                if let Some(v) = body.get(k) {
                    ep[k] = v.clone();
                }
            }
            ep["provisioning_state"] = json!("Updating");
            answer(200, ep.clone())
        }
        ("GET", ["online-endpoints", name]) => match w.endpoints.get_mut(*name) {
            Some(ep) => {
                let now = ep.clone();
                settle(ep);
                answer(200, now)
            }
            None => not_found("endpoint"),
        },
        ("DELETE", ["online-endpoints", name]) => match w.endpoints.remove(*name) {
            Some(_) => answer(202, Value::Null),
            None => not_found("endpoint"),
        },
        ("POST", ["online-endpoints", _, "get-credentials"]) => {
            answer(200, json!({"primaryKey": "key-1", "secondaryKey": "key-2"}))
        }
        ("POST" | "PUT", ["online-endpoints", ep, "deployments", ..]) => {
            w.deployment_bodies.push(body.clone());
            let mut d = body.clone();
            let state = if method == "POST" { "Creating" } else { "Updating" };
            d["provisioning_state"] = json!(state);
            d["replicas"] = json!({"desired": 1, "ready": 0});
            d["created_at"] = json!("t");
            d["updated_at"] = json!("t");
            let name = body["name"].as_str().unwrap().to_owned();
            w.deployments.insert((ep.to_string(), name), d.clone());
            answer(if method == "POST" { 201 } else { 200 }, d)
        }
        ("GET", ["online-endpoints", ep, "deployments", name]) => {
            match w.deployments.get_mut(&(ep.to_string(), name.to_string())) {
                Some(d) => {
                    let now = d.clone();
                    settle(d);
                    answer(200, now)
                }
                None => not_found("deployment"),
            }
        }
        ("POST", ["online-endpoints", ep, "rollouts"]) => {
            let Some(traffic) = w.endpoints.get(*ep).map(|e| e["traffic"].clone()) else {
                return not_found("endpoint");
            };
            if w.rollouts.get(*ep).is_some_and(|r| r["state"] == "Running") {
                return conflict("a rollout is already running");
            }
            w.rollout_bodies.push(body.clone());
            let mut r = body.clone();
            for (k, v) in [
                ("id", json!(format!("r{}", w.rollout_bodies.len()))),
                ("endpoint", json!(ep)),
                ("state", json!("Running")),
                ("step_index", json!(0)),
                ("original_traffic", traffic),
                ("history", json!([])),
                ("created_at", json!("t")),
                ("updated_at", json!("t")),
            ] {
                r[k] = v;
            }
            w.rollouts.insert(ep.to_string(), r.clone());
            answer(201, r)
        }
        ("GET", ["online-endpoints", ep, "rollouts", "latest"]) => {
            let World { rollouts, endpoints, .. } = &mut *w;
            let Some(r) = rollouts.get_mut(*ep) else { return not_found("rollout") };
            let now = r.clone();
            advance(r, endpoints.get_mut(*ep));
            answer(200, now)
        }
        ("POST", ["online-endpoints", ep, "rollouts", "latest", "abort"]) => {
            let Some(r) = w.rollouts.get_mut(*ep) else { return not_found("rollout") };
            if r["state"] != "Running" {
                return conflict("the rollout is not running");
            }
            r["state"] = json!("Aborted");
            r["message"] = json!("aborted by a user");
            answer(200, r.clone())
        }
        _ => not_found("route"),
    }
}
