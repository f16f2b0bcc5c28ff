//! The wire contract of both APIs: the bodies they read, the answers they give and every
//! documented operation, from which each API's OpenAPI document is built. The handlers answer
//! with these types; the documentation functions serve these documents and need nothing else.

pub mod ndp;
pub mod rexec;

use utoipa::openapi::OpenApi;

/// Stamps the release's version on a document.
fn versioned(mut document: OpenApi) -> OpenApi {
    document.info.version = env!("CARGO_PKG_VERSION").into();
    document
}
