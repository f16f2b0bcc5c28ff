//! Running a handler on Lambda: one span per request carrying its id, one log line per request,
//! errors rendered as JSON, `X-Request-Id` on every answer.

use std::convert::Infallible;
use std::future::Future;
use std::time::Instant;

use http::header::HOST;
use http::{HeaderMap, HeaderValue};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::Service;
use lambda_http::{Body, LambdaEvent, Request, Response, service_fn};
use tracing::Instrument;

use crate::config::{ConfigError, Vars};
use crate::http::error::ApiError;
use crate::http::request::{request_id, route};
use crate::metrics;

/// Answers one request with `handler`, whatever it returns; what it measured is written as
/// metric lines at the end ([`crate::metrics`]).
pub async fn respond<F, Fut>(req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route(&req),
        sub = tracing::field::Empty,
    );
    let started = Instant::now();
    let answer = async move {
        let mut response = handler(req).await.unwrap_or_else(|err| err.into_response(&id));
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", value);
        }
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request handled"
        );
        response
    }
    .instrument(span);
    // Boxed: a handler is a deep future, and the scope and the runtime nest it further.
    metrics::scope(Box::pin(answer)).await
}

/// The whole `main` of a function without settings: logs, then `handler` on the Lambda runtime.
pub async fn main<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Response<Body>, ApiError>> + Send,
{
    crate::http::logging::init(&Vars::from_env());
    run(handler).await
}

/// The whole `main` of a function: logs, its dependencies built once from the environment (a
/// bad setting fails the init naming the variable), then `handler` on the Lambda runtime.
pub async fn main_with<D, F, Fut>(
    build: fn(&Vars) -> Result<D, ConfigError>,
    handler: F,
) -> Result<(), lambda_http::Error>
where
    D: Send + Sync + 'static,
    F: Fn(&'static D, Request) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Response<Body>, ApiError>> + Send,
{
    let deps = init(build)?;
    run(move |req| handler(deps, req)).await
}

/// The whole `main` of a function run by a schedule rather than a request: logs, its
/// dependencies built once, then `handler` on each event, its report the invocation's result.
pub async fn main_scheduled<D, F, Fut, R>(
    build: fn(&Vars) -> Result<D, ConfigError>,
    handler: F,
) -> Result<(), lambda_http::Error>
where
    D: Send + Sync + 'static,
    F: Fn(&'static D, LambdaEvent<serde_json::Value>) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<R, lambda_http::Error>> + Send,
    R: serde::Serialize,
{
    let deps = init(build)?;
    lambda_http::lambda_runtime::run(service_fn(move |event| handler(deps, event))).await
}

/// Serves `handler` on the Lambda runtime until the container stops, each event
/// [`normalise`]d before `lambda_http` makes it a request.
async fn run<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Response<Body>, ApiError>> + Send,
{
    let mut adapter = lambda_http::Adapter::from(service_fn(move |req| async move {
        Ok::<_, Infallible>(respond(req, handler).await)
    }));
    lambda_http::lambda_runtime::run(service_fn(move |mut event: LambdaEvent<LambdaRequest>| {
        normalise(&mut event.payload);
        adapter.call(event)
    }))
    .await
}

/// Drops from an API Gateway event the `X-Forwarded-Proto` and `Host` headers, and the domain
/// name, that do not make a URL: `lambda_http` builds the request's URL from them and panics on
/// one that does not parse (`Host: a b`, `Host: [::1`, `Host: xn--a.com`, `X-Forwarded-Proto:
/// a b`), before any handler could answer. What is left makes a URL, or none is built.
pub fn normalise(event: &mut LambdaRequest) {
    let (headers, domain) = match event {
        LambdaRequest::ApiGatewayV2(r) => (&mut r.headers, &mut r.request_context.domain_name),
        LambdaRequest::ApiGatewayV1(r) => (&mut r.headers, &mut r.request_context.domain_name),
        _ => return,
    };
    let makes_url = |scheme: &str, host: &str| url::Url::parse(&format!("{scheme}://{host}/")).is_ok();
    let text = |headers: &HeaderMap, name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if text(headers, FORWARDED_PROTO).is_some_and(|scheme| !makes_url(&scheme, "localhost")) {
        headers.remove(FORWARDED_PROTO);
    }
    let scheme = text(headers, FORWARDED_PROTO).unwrap_or_else(|| "https".into());
    if text(headers, HOST.as_str()).is_some_and(|host| !makes_url(&scheme, &host)) {
        headers.remove(HOST);
    }
    if domain.as_deref().is_some_and(|host| !makes_url(&scheme, host)) {
        *domain = None;
    }
}

const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// A function's init: logs, then its dependencies built once from the environment, for the
/// container's life; a bad setting fails the init naming the variable.
fn init<D>(build: fn(&Vars) -> Result<D, ConfigError>) -> Result<&'static D, lambda_http::Error> {
    let vars = Vars::from_env();
    crate::http::logging::init(&vars);
    metrics::init(&vars).map_err(init_failed)?;
    Ok(Box::leak(Box::new(build(&vars).map_err(init_failed)?)))
}

/// Logs and returns a configuration error, so a function's init fails naming the variable.
fn init_failed(err: ConfigError) -> lambda_http::Error {
    tracing::error!(variable = %err.variable, "{err}");
    err.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP API event of `GET /api/health` with `header: value`.
    fn event(header: &str, value: &str) -> LambdaRequest {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "GET /api/health", "rawPath": "/api/health", "rawQueryString": "",
            "headers": {header: value},
            "requestContext": {"http": {"method": "GET", "path": "/api/health", "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1", "userAgent": "t"}, "domainName": "api.example.org",
                "stage": "$default", "requestId": "r", "accountId": "1", "apiId": "a", "time": "t", "timeEpoch": 0},
            "isBase64Encoded": false,
        });
        serde_json::from_value(event).unwrap()
    }

    #[test]
    fn headers_that_make_no_url_are_dropped_before_the_request_is_made() {
        for (header, value) in [
            ("host", "a b"),
            ("host", "[::1"),
            ("host", "xn--a.com"),
            ("x-forwarded-proto", "a b"),
        ] {
            let converted = std::panic::catch_unwind(|| Request::from(event(header, value)));
            assert!(converted.is_err(), "{header}: {value} panics lambda_http unguarded");
            let mut guarded = event(header, value);
            normalise(&mut guarded);
            let request = Request::from(guarded);
            assert!(request.headers().get(header).is_none(), "{header}: {value}");
            assert_eq!(request.uri().path(), "/api/health");
        }
        for (header, value) in [("host", "api.example.org"), ("x-forwarded-proto", "http")] {
            let mut kept = event(header, value);
            normalise(&mut kept);
            assert_eq!(Request::from(kept).headers()[header], value, "a good one is kept");
        }
    }
}
