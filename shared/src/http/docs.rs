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

/// What the pages may load: scripts, styles and the document from the API itself, nothing from
/// elsewhere. Both pages set styles inline (`unsafe-inline` for styles only); ReDoc's search runs
/// in a worker made from a `blob:`; ReDoc's sidebar shows a logo from Redocly's CDN, which this
/// policy blocks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The pages' scripts and styles, served from `.../docs/assets/<name>`: the files of pinned npm
/// releases (shared/assets/docs/sources.json, checked byte for byte by
/// tests/checks/check_docs_assets.py) and the script that starts Swagger UI.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/docs/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/docs/swagger-ui-bundle.js"),
    ),
    (
        "swagger-init.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/docs/swagger-init.js"),
    ),
    (
        "redoc.standalone.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/docs/redoc.standalone.js"),
    ),
];

/// Answers `.../docs`, `.../redoc`, `.../openapi.json` and `.../docs/assets/<name>` for the
/// `published` document. Every link is relative, so the pages work under any prefix.
pub fn page(req: &Request, published: &Published) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().trim_end_matches('/');
    let title = published.title;
    let answer = Response::builder()
        .status(StatusCode::OK)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    let (answer, body) = if path.ends_with("/openapi.json") {
        (
            answer.header(header::CONTENT_TYPE, "application/json"),
            published.json.to_owned(),
        )
    } else if path.ends_with("/docs") {
        (
            html(answer),
            format!(
                r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - Swagger UI</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-init.js"></script>
</body></html>"##
            ),
        )
    } else if path.ends_with("/redoc") {
        (
            html(answer),
            format!(
                r##"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title} - ReDoc</title>
<link rel="icon" href="data:,"></head>
<body><redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script>
</body></html>"##
            ),
        )
    } else if let Some((_, content_type, content)) = path
        .rsplit_once("/docs/assets/")
        .and_then(|(_, name)| ASSETS.iter().find(|(known, _, _)| *known == name))
    {
        (
            answer
                .header(header::CONTENT_TYPE, *content_type)
                .header(header::CACHE_CONTROL, "public, max-age=86400"),
            (*content).to_owned(),
        )
    } else {
        return Err(ApiError::not_found("No documentation page at this path."));
    };
    Ok(answer
        .body(Body::Text(body))
        .expect("a response built from valid parts"))
}

/// An HTML page's headers.
fn html(answer: http::response::Builder) -> http::response::Builder {
    answer
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::REFERRER_POLICY, "no-referrer")
}
