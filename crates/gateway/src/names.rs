//! Header names the data plane reads or writes on every request, as `HeaderName` constants: a
//! `&str` name is parsed, validated and lower-cased again on every lookup, which at 20-odd
//! lookups per request was about 6 % of the gateway's instructions (bench/callgrind.sh).

use http::{HeaderMap, HeaderName};

pub(crate) const API_KEY: HeaderName = HeaderName::from_static("api-key");
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const MS_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
/// [`crate::DEPLOYMENT_HEADER`].
pub(crate) const DEPLOYMENT: HeaderName = HeaderName::from_static("azureml-model-deployment");

/// Whether `name` describes one connection, not the request (never forwarded), by its text: cheaper
/// than comparing it with each such name.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

/// Removes the hop-by-hop headers, and those `also` names, from `headers`. A request carries a
/// handful of headers, so one pass over them and a removal for each one found costs a fraction of
/// a hashed removal for each of the names (about 20 per request, 3 % of the gateway's instructions).
pub(crate) fn strip(headers: &mut HeaderMap, also: &[HeaderName]) {
    while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k) || also.contains(k)).cloned() {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    /// Every hop-by-hop header (RFC 9110 section 7.6.1, plus Host, which the pool sets per connection).
    const HOP_BY_HOP: [HeaderName; 9] = [
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

    #[test]
    fn the_deployment_header_constant_is_the_public_name() {
        assert_eq!(super::DEPLOYMENT.as_str(), crate::DEPLOYMENT_HEADER);
    }

    #[test]
    fn strip_removes_every_hop_by_hop_header_and_the_named_ones_only() {
        let mut headers = HeaderMap::new();
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&name), "{name}");
            headers.append(name.clone(), "a".parse().unwrap());
            headers.append(name, "b".parse().unwrap());
        }
        headers.insert(API_KEY, "secret".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert(REQUEST_ID, "r1".parse().unwrap());
        strip(&mut headers, &[API_KEY]);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-request-id"]);
        assert!(!is_hop_by_hop(&header::CONTENT_LENGTH));
    }
}
