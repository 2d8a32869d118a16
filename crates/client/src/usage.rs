//! Usage records.

use crate::{ClientError, SluiceClient};
use reqwest::Method;
use sluice_api::usage::UsageReport;

impl SluiceClient {
    /// `GET /usage[?endpoint=E][&since=T]`.
    pub async fn get_usage(&self, endpoint: Option<&str>, since: Option<&str>) -> Result<UsageReport, ClientError> {
        let mut url = self.api_url(&["usage"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(e) = endpoint {
                q.append_pair("endpoint", e);
            }
            if let Some(s) = since {
                q.append_pair("since", s);
            }
        }
        let url = if url.query() == Some("") {
            let mut u = url.clone();
            u.set_query(None);
            u
        } else {
            url
        };
        self.send_json(self.api_request(Method::GET, url)).await
    }
}
