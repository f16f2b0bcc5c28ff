//! The NDP Endpoint API handlers, called with the API Gateway events in `events/`.

use http::header;
use lambda_http::{Body, Request, Response};
use rexec_shared::config::Vars;
use rexec_shared::http::serve::respond;
use rexec_stand_ins::identity_service::{IdentityService, dev_users};
use rexec_tests::events::{event, json_body, with_bearer};
use rexec_tests::logs::CapturedLogs;
use serde_json::Value;

const REQUEST_ID: &str = "Abc123requestIdEXAMPLE=";

fn at_path(mut req: Request, path: &str) -> Request {
    *req.uri_mut() = format!("https://api.example.org{path}").parse().unwrap();
    req
}

fn rexec_deps(service: &IdentityService, extra: &[(&str, &str)]) -> get_rexec_status::Deps {
    let url = service.url();
    let mut vars = vec![("AUTH_API_URL", url.as_str()), ("ENABLE_GROUP_BASED_ACCESS", "false")];
    vars.extend_from_slice(extra);
    get_rexec_status::Deps::from_vars(&Vars::from_pairs(vars)).unwrap()
}

async fn rexec_status(deps: &get_rexec_status::Deps, token: Option<&str>) -> Response<Body> {
    respond(with_bearer(event("get-rexec-status"), token), |req| {
        get_rexec_status::handler(deps, req)
    })
    .await
}

#[tokio::test]
async fn health_is_healthy_with_a_utc_timestamp() {
    let resp = respond(event("get-health"), get_health::handler).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], REQUEST_ID);
    let body = json_body(&resp);
    assert_eq!(body["status"], "healthy");
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    humantime::parse_rfc3339(timestamp).expect("ISO-8601");
}

#[tokio::test]
async fn status_reports_the_crate_version_with_or_without_the_slash() {
    let deps = get_status::Deps::from_vars(&Vars::default()).unwrap();
    for path in ["/api/status/", "/api/status"] {
        let resp = respond(at_path(event("get-status"), path), |req| {
            get_status::handler(&deps, req)
        })
        .await;
        assert_eq!(resp.status(), 200);
        let body = json_body(&resp);
        assert_eq!(body["api_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(body["rexec_enabled"], true);
    }
    let off = get_status::Deps::from_vars(&Vars::from_pairs([("REXEC_ENABLED", "false")])).unwrap();
    let resp = respond(event("get-status"), |req| get_status::handler(&off, req)).await;
    assert_eq!(json_body(&resp)["rexec_enabled"], false);
}

#[tokio::test]
async fn rexec_status_names_the_deployment_api() {
    let service = IdentityService::start(dev_users()).await;
    let token = service.issue("alice", None);
    let derived = rexec_deps(&service, &[]);
    let resp = rexec_status(&derived, Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(&resp)["deployment_api_url"], "https://api.example.org/rexec");

    let configured = rexec_deps(
        &service,
        &[("REXEC_DEPLOYMENT_API_URL", "https://rexec.example.org/rexec/")],
    );
    let resp = rexec_status(&configured, Some(&token)).await;
    assert_eq!(
        json_body(&resp)["deployment_api_url"],
        "https://rexec.example.org/rexec"
    );
}

#[tokio::test]
async fn rexec_status_takes_the_token_from_a_form_body_too() {
    let service = IdentityService::start(dev_users()).await;
    let deps = rexec_deps(&service, &[]);
    let mut req = with_bearer(event("get-rexec-status"), None);
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    *req.body_mut() = Body::Text(format!("token={}", service.issue("alice", None)));
    let resp = respond(req, |req| get_rexec_status::handler(&deps, req)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn rexec_status_errors_are_json_with_the_right_status_and_headers() {
    let service = IdentityService::start(dev_users()).await;
    let deps = rexec_deps(
        &service,
        &[("GROUP_NAMES", "/ndp_ep/ep-dev"), ("ENABLE_GROUP_BASED_ACCESS", "true")],
    );
    let alice = service.issue("alice", None);
    let eve = service.issue("eve", None);

    let cases: [(Option<&str>, u16, &str); 4] = [
        (None, 401, "missing_token"),
        (Some("forged"), 401, "invalid_token"),
        (Some(&eve), 403, "forbidden"),
        (Some(&alice), 200, ""),
    ];
    for (token, status, code) in cases {
        let resp = rexec_status(&deps, token).await;
        assert_eq!(resp.status(), status, "{token:?}");
        assert_eq!(resp.headers()["x-request-id"], REQUEST_ID);
        let body = json_body(&resp);
        if status != 200 {
            assert_eq!(body["error"], code);
            assert_eq!(body["request_id"], REQUEST_ID);
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
            assert_eq!(resp.headers().contains_key(header::WWW_AUTHENTICATE), status == 401);
        }
    }

    service.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let fresh = rexec_deps(&service, &[]);
    let resp = rexec_status(&fresh, Some(&alice)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(json_body(&resp)["error"], "identity_unavailable");
}

#[tokio::test]
async fn rexec_status_is_404_when_rexec_is_off() {
    let service = IdentityService::start(dev_users()).await;
    let deps = rexec_deps(&service, &[("REXEC_ENABLED", "false")]);
    let resp = rexec_status(&deps, Some(&service.issue("alice", None))).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_body(&resp)["error"], "not_found");
}

#[test]
fn a_function_without_its_settings_fails_naming_the_variable() {
    let err = get_rexec_status::Deps::from_vars(&Vars::default()).err().unwrap();
    assert_eq!(err.variable, "AUTH_API_URL");
    let err = get_rexec_status::Deps::from_vars(&Vars::from_pairs([("AUTH_API_URL", "http://id/user")]))
        .err()
        .unwrap();
    assert_eq!(err.variable, "GROUP_NAMES", "admitting everyone is never a default");
    let err = get_rexec_status::Deps::from_vars(&Vars::from_pairs([
        ("AUTH_API_URL", "http://id/user"),
        ("GROUP_NAMES", "/ndp_ep/ep-dev"),
        ("REXEC_DEPLOYMENT_API_URL", "rexec"),
    ]))
    .err()
    .unwrap();
    assert_eq!(err.variable, "REXEC_DEPLOYMENT_API_URL");
}

#[tokio::test]
async fn docs_pages_and_the_openapi_document() {
    let resp = respond(event("serve-ndp-docs"), serve_ndp_docs::handler).await;
    assert_eq!(resp.status(), 200);
    let doc = json_body(&resp);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for path in ["/health", "/status/", "/status", "/status/rexec"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} is documented");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let rexec = &doc["paths"]["/status/rexec"]["get"];
    assert!(rexec["security"].is_array());
    for status in ["200", "401", "403", "404", "503"] {
        assert!(
            rexec["responses"][status].is_object(),
            "/status/rexec documents {status}"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    // Swagger UI reads the document through its start script, ReDoc through its element.
    for (page, marker) in [
        ("/api/docs", "docs/assets/swagger-init.js"),
        ("/api/redoc", "<redoc spec-url=\"openapi.json\">"),
    ] {
        let resp = respond(at_path(event("serve-ndp-docs"), page), serve_ndp_docs::handler).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self';") && csp.starts_with("default-src 'none'"));
        let html = std::str::from_utf8(resp.body().as_ref()).unwrap();
        assert!(html.contains(marker), "{page}");
        // Every script and style comes from the API itself, and no script is inline.
        for link in html
            .split(['"', '\''])
            .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        {
            assert!(link.starts_with("docs/assets/"), "{page} loads {link}");
        }
        assert!(!html.contains("<script>"), "{page} has no inline script");
    }
    for (asset, content_type, start) in [
        ("swagger-ui-bundle.js", "text/javascript", "/*! For license information"),
        (
            "swagger-init.js",
            "text/javascript",
            "// Starts Swagger UI on the API's OpenAPI",
        ),
        ("redoc.standalone.js", "text/javascript", "/*! For license information"),
        ("swagger-ui.css", "text/css", ".swagger-ui"),
    ] {
        let path = format!("/api/docs/assets/{asset}");
        let resp = respond(at_path(event("serve-ndp-docs"), &path), serve_ndp_docs::handler).await;
        assert_eq!(resp.status(), 200, "{asset}");
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = std::str::from_utf8(resp.body().as_ref()).unwrap();
        assert!(body.starts_with(start), "{asset} starts with {:?}", &body[..40]);
    }
    for elsewhere in [
        "/api/docs/assets/sources.json",
        "/api/docs/assets/swagger-ui-bundle.js.map",
        "/api/docs/assets/x/swagger-init.js",
        "/api/docs/assets/",
    ] {
        let resp = respond(at_path(event("serve-ndp-docs"), elsewhere), serve_ndp_docs::handler).await;
        assert_eq!(resp.status(), 404, "{elsewhere}");
    }
    let resp = respond(
        at_path(event("serve-ndp-docs"), "/api/elsewhere"),
        serve_ndp_docs::handler,
    )
    .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json_body(&resp)["error"], "not_found");
}

#[tokio::test(flavor = "current_thread")]
async fn one_log_line_per_request_with_the_caller_and_never_the_token() {
    let service = IdentityService::start(dev_users()).await;
    let deps = rexec_deps(&service, &[]);
    let token = service.issue("alice", None);
    let forged = "forged-token-value-123";

    let (logs, _guard) = CapturedLogs::start();
    assert_eq!(rexec_status(&deps, Some(&token)).await.status(), 200);
    assert_eq!(rexec_status(&deps, Some(forged)).await.status(), 401);

    let text = logs.text();
    assert!(
        !text.contains(&token) && !text.contains(forged),
        "a token reached the logs:\n{text}"
    );
    let lines = logs.lines();
    assert!(
        lines.iter().all(|l| l["span"]["request_id"] == REQUEST_ID),
        "every line carries the request id"
    );
    let handled: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request handled").collect();
    assert_eq!(handled.len(), 2, "one line per request:\n{text}");
    let ok = handled[0];
    assert_eq!(ok["status"], 200);
    assert!(ok["latency_ms"].as_f64().is_some());
    assert_eq!(ok["span"]["method"], "GET");
    assert_eq!(ok["span"]["route"], "GET /api/status/rexec");
    assert_eq!(ok["span"]["sub"], "alice-0000-4000-8000-000000000001");
    assert_eq!(handled[1]["status"], 401);
}
