//! The API Gateway events of `events/` and the JSON answers of the handlers.

use lambda_http::http::header;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// The event `events/<name>.json` as the function receives it.
pub fn event(name: &str) -> Request {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    lambda_http::request::from_str(&std::fs::read_to_string(path).unwrap()).expect("an API Gateway event")
}

/// The event `events/<name>.json` with its Authorization header replaced by `authorization`
/// (left out when absent or not a valid header value) and, when `body` is given, its content
/// type and body replaced (the content type left out when `None`).
pub fn event_with(name: &str, authorization: Option<&[u8]>, body: Option<(Option<&str>, Vec<u8>)>) -> Request {
    let mut req = event(name);
    req.headers_mut().remove(header::AUTHORIZATION);
    if let Some(value) = authorization.and_then(|v| header::HeaderValue::from_bytes(v).ok()) {
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    if let Some((content_type, bytes)) = body {
        req.headers_mut().remove(header::CONTENT_TYPE);
        if let Some(value) = content_type {
            req.headers_mut().insert(header::CONTENT_TYPE, value.parse().unwrap());
        }
        *req.body_mut() = Body::Binary(bytes);
    }
    req
}

/// `req` with `Authorization: Bearer <token>`, or without the header when `token` is `None`.
pub fn with_bearer(mut req: Request, token: Option<&str>) -> Request {
    req.headers_mut().remove(header::AUTHORIZATION);
    if let Some(token) = token {
        req.headers_mut()
            .insert(header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    }
    req
}

/// `POST /rexec/spawn` with the Bearer header and the JSON body `body`.
pub fn spawn_json(token: &str, body: &serde_json::Value) -> Request {
    let mut req = with_bearer(event("spawn-server"), Some(token));
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    *req.body_mut() = Body::Text(body.to_string());
    req
}

/// The body of a JSON answer (asserting that it is one).
pub fn json_body(resp: &Response<Body>) -> Value {
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(resp.body().as_ref()).expect("a JSON body")
}
