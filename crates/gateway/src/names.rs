//! Header names the data plane reads or writes on every request, as `HeaderName` constants: a
//! `&str` name is parsed, validated and lower-cased again on every lookup, which at 20-odd
//! lookups per request was about 6 % of the gateway's instructions (bench/callgrind.sh).

use http::HeaderName;
use http::header;

pub(crate) const API_KEY: HeaderName = HeaderName::from_static("api-key");
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const MS_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
/// [`crate::DEPLOYMENT_HEADER`].
pub(crate) const DEPLOYMENT: HeaderName = HeaderName::from_static("azureml-model-deployment");

/// Headers that describe one connection, not the request; never forwarded.
pub(crate) const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_deployment_header_constant_is_the_public_name() {
        assert_eq!(super::DEPLOYMENT.as_str(), crate::DEPLOYMENT_HEADER);
    }
}
