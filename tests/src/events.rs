//! The API Gateway events of `events/` and the JSON answers of the handlers.

use lambda_http::http::header;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

/// The event `events/<name>.json` as the function receives it.
pub fn event(name: &str) -> Request {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    lambda_http::request::from_str(&std::fs::read_to_string(path).unwrap()).expect("an API Gateway event")
}

/// The body of a JSON answer (asserting that it is one).
pub fn json_body(resp: &Response<Body>) -> Value {
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(resp.body().as_ref()).expect("a JSON body")
}
