//! The interactive documentation of an API: Swagger UI at `docs`, ReDoc at `redoc`, and the
//! OpenAPI document at `openapi.json`, all beside each other under the API's prefix.

use http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::http::api::Published;
use crate::http::error::ApiError;

/// The name of the Bearer security scheme in every OpenAPI document.
pub const BEARER: &str = "bearer";

/// Adds the Bearer security scheme to a document.
pub struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some("An access token from the platform's Keycloak.".into());
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Answers `.../docs`, `.../redoc` and `.../openapi.json` for the `published` document.
pub fn page(req: &Request, published: &Published) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/');
    let title = published.title;
    let (content_type, body) = if path.ends_with("/openapi.json") {
        ("application/json", published.json.to_owned())
    } else if path.ends_with("/docs") {
        (
            "text/html; charset=utf-8",
            format!(
                r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - Swagger UI</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true}});</script>
</body></html>"##
            ),
        )
    } else if path.ends_with("/redoc") {
        (
            "text/html; charset=utf-8",
            format!(
                r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - ReDoc</title></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>"##
            ),
        )
    } else {
        return Err(ApiError::not_found("No documentation page at this path."));
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::Text(body))
        .expect("a response built from valid parts"))
}
