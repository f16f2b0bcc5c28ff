//! Any bytes as an Authorization header or a form body: a bearer token comes out, or a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_shared::lambda_http::{Body, Request};
use rexec_shared::http::request;

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else { return };
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("https://api.example.org/rexec/terminate")
        .header("content-type", "application/x-www-form-urlencoded");
    let body = if how % 2 == 0 {
        match http::HeaderValue::from_bytes(rest) {
            Ok(value) => builder = builder.header("authorization", value),
            Err(_) => return,
        }
        Vec::new()
    } else {
        rest.to_vec()
    };
    let req: Request = builder.body(Body::Binary(body)).unwrap();
    match request::token(&req) {
        Ok(token) => assert!(request::is_bearer_token(&token)),
        Err(err) => assert!(err.status.is_client_error()),
    }
});
