//! `GET /api/docs`, `/api/redoc`, `/api/openapi.json`: the NDP Endpoint API's documentation,
//! generated from the handlers' own annotations.

use std::sync::LazyLock;

use lambda_http::{Body, Request, Response};
use rexec_shared::docs::{self, BearerSecurity};
use rexec_shared::error::{ApiError, ErrorBody};
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NDP Endpoint API",
        description = "Liveness, version, and where the Rexec Deployment API lives.",
    ),
    servers((url = "/api")),
    paths(get_health::handler, get_status::handler, get_rexec_status::handler),
    components(schemas(ErrorBody)),
    modifiers(&BearerSecurity),
)]
struct NdpApi;

/// The document, built once per container. `/status` answers as `/status/` does.
pub static OPENAPI: LazyLock<Document> = LazyLock::new(|| {
    let mut doc = NdpApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    if let Some(mut item) = doc.paths.paths.get("/status/").cloned() {
        if let Some(op) = item.get.as_mut() {
            op.operation_id = Some("status_without_slash".into());
        }
        doc.paths.paths.insert("/status".into(), item);
    }
    doc
});

pub async fn handler(req: Request) -> Result<Response<Body>, ApiError> {
    docs::page(&req, &OPENAPI)
}
