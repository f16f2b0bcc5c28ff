//! Any bytes as a form body: decoded into fields or refused with a 4xx, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_shared::lambda_http::{Body, Request};
use rexec_shared::http::request;

fuzz_target!(|data: &[u8]| {
    let req: Request = http::Request::builder()
        .method("POST")
        .uri("https://api.example.org/rexec/spawn")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::Binary(data.to_vec()))
        .unwrap();
    match request::form_fields(&req) {
        Ok(fields) => assert!(fields.len() <= data.len() + 1),
        Err(err) => assert!(err.status.is_client_error()),
    }
});
