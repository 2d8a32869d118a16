//! Progressive rollouts: an endpoint's live traffic moved to one deployment step by step.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::rollout::{Rollout, RolloutSpec};

impl SluiceClient {
    /// `POST /online-endpoints/{endpoint}/rollouts`: starts a rollout (201). 400 with field
    /// details for a bad spec, 409 while another rollout of the endpoint is running.
    pub async fn start_rollout(&self, endpoint: &str, spec: &RolloutSpec) -> Result<Rollout, ClientError> {
        self.call(Method::POST, &["online-endpoints", endpoint, "rollouts"], Some(spec)).await
    }

    /// `GET /online-endpoints/{endpoint}/rollouts/latest` (404 if the endpoint never had one).
    pub async fn get_rollout(&self, endpoint: &str) -> Result<Rollout, ClientError> {
        self.call::<(), _>(Method::GET, &["online-endpoints", endpoint, "rollouts", "latest"], None).await
    }

    /// `POST /online-endpoints/{endpoint}/rollouts/latest/abort`: stops the running rollout and
    /// puts traffic back where it started (409 if it is not running).
    pub async fn abort_rollout(&self, endpoint: &str) -> Result<Rollout, ClientError> {
        self.call::<(), _>(Method::POST, &["online-endpoints", endpoint, "rollouts", "latest", "abort"], None).await
    }
}
