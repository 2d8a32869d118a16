//! The routing view the control plane publishes: endpoints, their credentials and traffic.

use sluice_domain::AuthMode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The data plane's maps, looked up several times per request. foldhash (hashbrown's default
/// hasher) instead of std's SipHash, which was 3 % of the gateway's instructions; its per-map
/// random seed keeps keys from being chosen to collide, and only the control plane inserts keys.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Ready replica addresses per replica set, as the backend publishes them.
pub type ReplicaAddrs = Arc<HashMap<String, Vec<SocketAddr>>>;

/// Everything the gateway needs to serve every endpoint; replaced whole on each change.
#[derive(Debug, Default)]
pub struct RoutingTable {
    pub endpoints: FastMap<String, EndpointRoute>,
    /// Serverless API endpoints by name (`/serverless/{name}/...`).
    pub serverless: HashMap<String, ServerlessRoute>,
}

/// One serverless endpoint: its keys, limits and the shared engine replica set it calls.
#[derive(Debug, Clone)]
pub struct ServerlessRoute {
    pub workspace: String,
    /// SHA-256 of the primary and secondary keys.
    pub key_hashes: [[u8; 32]; 2],
    /// The engine's replica-set id, shared by every endpoint on the same catalog model.
    pub replica_set: String,
    pub tokens_per_minute: u64,
    pub requests_per_minute: u64,
    /// The catalog model's id, for traces.
    pub model: String,
}

#[derive(Debug)]
pub struct EndpointRoute {
    /// Changes when an endpoint is deleted and created again; tokens are bound to it.
    pub uid: String,
    pub auth_mode: AuthMode,
    /// SHA-256 of the primary and secondary keys: the gateway never holds a key itself.
    pub key_hashes: [[u8; 32]; 2],
    /// Deployments with a positive weight, in a stable order.
    pub traffic: Vec<(String, u32)>,
    /// The mirror deployment and the percent of unpinned live requests it gets a copy of.
    pub mirror: Option<(String, u32)>,
    pub deployments: FastMap<String, DeploymentRoute>,
}

#[derive(Debug, Clone)]
pub struct DeploymentRoute {
    /// The backend's replica-set id.
    pub replica_set: String,
    pub request_timeout_ms: u64,
    /// Requests one ready replica takes at once; more wait in the gateway's queue.
    pub max_concurrent_per_instance: u32,
    /// The longest a request waits for a slot before it is refused with 429.
    pub max_queue_wait_ms: u64,
    /// Set when the deployment scales to zero: how long a request that finds no replica is held
    /// while one starts.
    pub cold_start_timeout_ms: Option<u64>,
    /// Payload logging (`data_collector`), when the deployment turned it on.
    pub collect: Option<std::sync::Arc<sluice_domain::DataCollection>>,
}

impl EndpointRoute {
    /// Picks a deployment by weight; `roll` is uniform in `0..100`.
    pub fn pick_weighted(&self, roll: u32) -> Option<&str> {
        let total: u32 = self.traffic.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut point = roll % total;
        for (name, w) in &self.traffic {
            if point < *w {
                return Some(name);
            }
            point -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(traffic: &[(&str, u32)]) -> EndpointRoute {
        EndpointRoute {
            uid: "u".into(),
            auth_mode: AuthMode::Key,
            key_hashes: [[0; 32]; 2],
            traffic: traffic.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
            mirror: None,
            deployments: FastMap::default(),
        }
    }

    #[test]
    fn weighted_pick_covers_each_share_exactly() {
        let r = route(&[("blue", 90), ("green", 10)]);
        let greens = (0..100).filter(|i| r.pick_weighted(*i) == Some("green")).count();
        assert_eq!(greens, 10);
        assert_eq!(route(&[]).pick_weighted(5), None);
        assert_eq!(route(&[("blue", 0)]).pick_weighted(5), None);
    }
}
