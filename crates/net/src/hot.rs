//! One hot route answered in front of an axum `Router`.
//!
//! axum's router costs a request, on the scoring path, about a tenth of the gateway's own
//! instructions (`bench/callgrind.sh`): the path is matched against every route's pattern, the
//! boxed route service is cloned, the captured segments go into a new map that is inserted into
//! the request's extensions with the matched path, and each layer boxes the future again.
//! [`HotRoute`] lets a server answer its one hot route (a replica's `POST
//! /v2/models/{model}/infer`, the gateway's `/endpoints/{endpoint}/...`) from a plain function of
//! the request line, and hands every other request to the router unchanged. The function must
//! take only requests the router would have sent to the same handler with the same captures;
//! when in doubt (a percent-encoded path, say) it gives the request back.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures_util::FutureExt;
use futures_util::future::{Either, Map};
use tower::Service;

/// What the hot function does with a request.
#[allow(clippy::large_enum_variant, reason = "returned at once and matched by the caller, never stored")]
pub enum Hot<Fut> {
    /// Takes it: the future answers it.
    Take(Fut),
    /// Gives it back to the router.
    Pass(Request),
}

/// A service that answers the requests `hot` takes and passes the rest to `router`.
#[derive(Clone)]
pub struct HotRoute<F> {
    hot: F,
    router: axum::Router,
}

impl<F> HotRoute<F> {
    pub fn new(hot: F, router: axum::Router) -> Self {
        Self { hot, router }
    }
}

type Answered<Fut> = Map<Fut, fn(Response) -> Result<Response, Infallible>>;

impl<F, Fut> Service<Request> for HotRoute<F>
where
    F: Fn(Request) -> Hot<Fut>,
    Fut: Future<Output = Response>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Answered<Fut>, <axum::Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match (self.hot)(req) {
            Hot::Take(answer) => Either::Left(answer.map(Ok as fn(Response) -> Result<Response, Infallible>)),
            Hot::Pass(req) => Either::Right(self.router.call(req)),
        }
    }
}

/// The one segment of `path` between `prefix` and `suffix` (`/v2/models/` and `/infer` give the
/// model of `/v2/models/{model}/infer`), when it is a plain, non-empty segment: `None` when it is
/// empty, holds a `/`, or the path holds a `%` (a router would percent-decode it first).
pub fn segment_between<'a>(path: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let segment = path.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!segment.is_empty() && !segment.contains('/') && !path.contains('%')).then_some(segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    fn request(path: &str) -> Request {
        Request::builder().method("POST").uri(path).body(Body::empty()).unwrap()
    }

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 10).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_hot_function_answers_what_it_takes_and_the_router_the_rest() {
        let router = axum::Router::new().route("/m/{name}/go", post(|| async { "router" }));
        let hot = |req: Request| match segment_between(req.uri().path(), "/m/", "/go") {
            Some(name) => {
                let name = name.to_owned();
                Hot::Take(async move { Response::new(Body::from(format!("hot {name}"))) })
            }
            None => Hot::Pass(req),
        };
        let service = HotRoute::new(hot, router);
        let answer = service.clone().oneshot(request("/m/lr/go")).await.unwrap();
        assert_eq!(text(answer).await, "hot lr");
        // Percent-encoded: given back, and the router decodes and answers it.
        let answer = service.clone().oneshot(request("/m/l%72/go")).await.unwrap();
        assert_eq!(text(answer).await, "router");
        let answer = service.oneshot(request("/elsewhere")).await.unwrap();
        assert_eq!(answer.status(), http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_segment_is_plain_and_not_empty() {
        assert_eq!(segment_between("/v2/models/lr/infer", "/v2/models/", "/infer"), Some("lr"));
        assert_eq!(segment_between("/v2/models//infer", "/v2/models/", "/infer"), None);
        assert_eq!(segment_between("/v2/models/a/b/infer", "/v2/models/", "/infer"), None);
        assert_eq!(segment_between("/v2/models/l%20r/infer", "/v2/models/", "/infer"), None);
        assert_eq!(segment_between("/v2/models/lr/infer/", "/v2/models/", "/infer"), None);
    }
}
