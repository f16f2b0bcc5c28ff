//! Running a handler on Lambda: one span per request carrying its id, one log line per request,
//! errors rendered as JSON, `X-Request-Id` on every answer.

use std::convert::Infallible;
use std::future::Future;
use std::time::Instant;

use http::HeaderValue;
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
    crate::http::logging::init();
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

/// Serves `handler` on the Lambda runtime until the container stops.
async fn run<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(Request) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Response<Body>, ApiError>> + Send,
{
    lambda_http::run(service_fn(move |req| async move {
        Ok::<_, Infallible>(respond(req, handler).await)
    }))
    .await
}

/// A function's init: logs, then its dependencies built once from the environment, for the
/// container's life; a bad setting fails the init naming the variable.
fn init<D>(build: fn(&Vars) -> Result<D, ConfigError>) -> Result<&'static D, lambda_http::Error> {
    crate::http::logging::init();
    let vars = Vars::from_env();
    metrics::init(&vars).map_err(init_failed)?;
    Ok(Box::leak(Box::new(build(&vars).map_err(init_failed)?)))
}

/// Logs and returns a configuration error, so a function's init fails naming the variable.
fn init_failed(err: ConfigError) -> lambda_http::Error {
    tracing::error!(variable = %err.variable, "{err}");
    err.into()
}
