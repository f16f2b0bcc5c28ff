//! Reading API Gateway requests: the request id, the route, the caller's token, form bodies,
//! and writing JSON answers.

use http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::identity::Identity;
use crate::identity::access::Access;

/// The largest form body read, in bytes (the published client's spawn form is far below it).
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// The longest token accepted, in bytes (Keycloak access tokens are a few kilobytes).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// API Gateway's request id, or a new UUID when there is none (local runs, direct invokes).
pub fn request_id(req: &Request) -> String {
    let from_gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .filter(|id| !id.is_empty() && HeaderValue::from_str(id).is_ok())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The route as API Gateway matched it (`GET /api/status/rexec`), else the method and path.
pub fn route(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.clone().filter(|r| r != "$default"),
        _ => None,
    }
    .unwrap_or_else(|| format!("{} {}", req.method(), req.uri().path()))
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Text(
            serde_json::to_string(body).expect("response bodies serialise"),
        ))
        .expect("a response built from valid parts")
}

/// The fields of an `application/x-www-form-urlencoded` body, in order, repeated fields kept.
pub fn form_fields(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    if !has_content_type(req, "application/x-www-form-urlencoded") {
        return Err(ApiError::unsupported_media_type(
            "Send the fields as application/x-www-form-urlencoded.",
        ));
    }
    let body = req.body().as_ref();
    if body.len() > MAX_FORM_BYTES {
        return Err(ApiError::payload_too_large(format!(
            "The form body is larger than {MAX_FORM_BYTES} bytes."
        )));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::bad_request("malformed_body", "The form body is not valid URL-encoded data."))
}

/// Whether the request's media type (parameters ignored) is `expected`.
pub fn has_content_type(req: &Request, expected: &str) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// The caller's token: `Authorization: Bearer <token>` first, else the form field `token`
/// (the published clients send it that way on `POST /spawn` and `DELETE /terminate`). A token
/// must be an RFC 6750 `b64token` of at most [`MAX_TOKEN_BYTES`]: anything else is refused
/// with 401 before any identity provider is asked.
pub fn token(req: &Request) -> Result<String, ApiError> {
    let field = if req.headers().contains_key(header::AUTHORIZATION)
        || !has_content_type(req, "application/x-www-form-urlencoded")
    {
        None
    } else {
        token_field(&form_fields(req)?)
    };
    bearer_or(req, field)
}

/// The caller of `req`: its token read ([`token`]), then authenticated and admitted by `access`.
pub async fn caller(access: &Access, req: &Request) -> Result<Identity, ApiError> {
    Ok(access.authenticate(&token(req)?).await?)
}

/// The caller of `req`, as [`caller`], who must also be an administrator: a route of the admin
/// tier.
pub async fn administrator(access: &Access, req: &Request) -> Result<Identity, ApiError> {
    let identity = caller(access, req).await?;
    access.require_admin(&identity)?;
    Ok(identity)
}

/// The longest `sub` an administrator's route takes, in bytes.
pub const MAX_OWNER_BYTES: usize = 255;

/// The path parameter `owner` of the administrators' routes (`/servers/{owner}`): a caller's
/// `sub`, of 1 to [`MAX_OWNER_BYTES`] bytes without control characters (400 otherwise). `None`
/// on a route without it.
pub fn owner_param(req: &Request) -> Result<Option<String>, ApiError> {
    let params = req.path_parameters();
    let Some(owner) = params.first("owner") else {
        return Ok(None);
    };
    if owner.is_empty() || owner.len() > MAX_OWNER_BYTES || owner.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_owner",
            format!("The owner is a caller's sub: 1 to {MAX_OWNER_BYTES} bytes, without control characters."),
        ));
    }
    Ok(Some(owner.to_owned()))
}

/// The form field `token` of a form already read.
pub fn token_field(fields: &[(String, String)]) -> Option<String> {
    fields
        .iter()
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.clone())
}

/// The caller's token from `Authorization: Bearer`, else `field` (the form field `token` of a
/// body already read), checked as [`token`] checks it.
pub fn bearer_or(req: &Request, field: Option<String>) -> Result<String, ApiError> {
    let token = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().unwrap_or_default().trim();
            let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::unauthorized(
                    "invalid_token",
                    "Use the Bearer authorization scheme.",
                ));
            }
            Some(credentials.trim_ascii().to_owned())
        }
        None => field.map(|token| token.trim_ascii().to_owned()),
    };
    match token {
        Some(token) if token.is_empty() => Err(ApiError::unauthorized("missing_token", "The token is empty.")),
        Some(token) if !is_bearer_token(&token) => Err(ApiError::unauthorized(
            "invalid_token",
            "The token was refused: it is not a bearer token.",
        )),
        Some(token) => Ok(token),
        None => Err(ApiError::unauthorized(
            "missing_token",
            "No token was sent. Send `Authorization: Bearer <token>` or a form field `token`.",
        )),
    }
}

/// Whether `s` can be a bearer token: RFC 6750's `b64token`, `1*( ALPHA / DIGIT / "-" / "." /
/// "_" / "~" / "+" / "/" ) *"="`, at most [`MAX_TOKEN_BYTES`] long.
pub fn is_bearer_token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && s.len() <= MAX_TOKEN_BYTES
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("https://h/rexec/spawn");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Body::Text(body.into())).unwrap()
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn the_header_wins_over_the_form() {
        let req = request(&[("authorization", "Bearer from-header"), FORM], "token=from-form");
        assert_eq!(token(&req).unwrap(), "from-header");
        let req = request(&[("authorization", "bearer  spaced ")], "");
        assert_eq!(token(&req).unwrap(), "spaced");
    }

    #[test]
    fn the_form_field_is_read_without_a_header() {
        let req = request(
            &[("content-type", "application/x-www-form-urlencoded; charset=utf-8")],
            "requirments=a&token=t%2B1",
        );
        assert_eq!(token(&req).unwrap(), "t+1");
    }

    #[test]
    fn missing_or_wrong_credentials_are_401() {
        for (headers, body) in [
            (vec![], ""),
            (vec![FORM], "token="),
            (vec![("content-type", "application/json")], r#"{"token":"x"}"#),
            (vec![("authorization", "Basic dTpw")], ""),
            (vec![("authorization", "Bearer ")], ""),
        ] {
            let err = token(&request(&headers, body)).unwrap_err();
            assert_eq!(err.status, 401, "{headers:?} {body}");
        }
    }

    #[test]
    fn characters_no_bearer_token_holds_are_401() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        for bad in [
            "a b%20c",
            "t%0Aoken",
            "%E2%80%A8",
            "to%24ken",
            "tok%22en",
            "%3D%3D",
            long.as_str(),
        ] {
            let req = request(&[FORM], &format!("token={bad}"));
            let err = token(&req).unwrap_err();
            assert_eq!((err.status.as_u16(), err.code), (401, "invalid_token"), "{bad}");
        }
        let req = request(&[("authorization", "Bearer a\"b")], "");
        assert_eq!(token(&req).unwrap_err().status, 401);
        for good in ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "abc-._~+/==", "T0K3N"] {
            let req = request(&[("authorization", &format!("Bearer {good}"))], "");
            assert_eq!(token(&req).unwrap(), good);
        }
    }

    #[test]
    fn repeated_fields_keep_their_order() {
        let req = request(
            &[FORM],
            "requirments=python%3D%3D3.11&requirments=numpy%3E%3D1.26&force_reinstall=False",
        );
        let fields = form_fields(&req).unwrap();
        assert_eq!(fields[0], ("requirments".into(), "python==3.11".into()));
        assert_eq!(fields[1], ("requirments".into(), "numpy>=1.26".into()));
    }

    #[test]
    fn form_errors() {
        assert_eq!(form_fields(&request(&[], "a=b")).unwrap_err().status, 415);
        let big = "a=".to_owned() + &"x".repeat(MAX_FORM_BYTES);
        assert_eq!(form_fields(&request(&[FORM], &big)).unwrap_err().status, 413);
    }

    #[test]
    fn request_ids_are_generated_when_absent() {
        let req = request(&[], "");
        let (a, b) = (request_id(&req), request_id(&req));
        assert_ne!(a, b);
        assert_eq!(route(&req), "POST /rexec/spawn");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn request(headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("https://h/rexec/spawn");
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                builder = builder.header(name, value);
            }
        }
        builder.body(Body::Binary(body)).unwrap()
    }

    fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
        (
            prop_oneof![Just("authorization".to_owned()), Just("content-type".to_owned())],
            prop_oneof![
                any::<Vec<u8>>(),
                "(?i)bearer [ -~]{0,40}".prop_map(String::into_bytes),
                Just(b"application/x-www-form-urlencoded".to_vec()),
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn any_request_gives_a_bearer_token_or_a_401(
            headers in proptest::collection::vec(header(), 0..3),
            body in prop_oneof![any::<Vec<u8>>(), "(token=[%A-Za-z0-9+/=._~ -]{0,30}&?){0,3}".prop_map(String::into_bytes)],
        ) {
            match token(&request(headers, body)) {
                Ok(token) => prop_assert!(is_bearer_token(&token), "{:?}", token),
                Err(err) => prop_assert!(matches!(err.status.as_u16(), 401 | 413 | 400), "{}", err.status),
            }
        }

        #[test]
        fn any_form_body_decodes_or_is_a_400(body in any::<Vec<u8>>()) {
            let req = request(vec![("content-type".into(), b"application/x-www-form-urlencoded".to_vec())], body);
            if let Err(err) = form_fields(&req) {
                prop_assert_eq!(err.status.as_u16(), 400);
            }
        }
    }
}
