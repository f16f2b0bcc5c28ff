//! The one error type of every API, rendered as JSON.
//!
//! The body keeps FastAPI's `detail` so existing clients read it as before, and adds a stable
//! machine-readable `error` code and the `request_id` to quote in a support request:
//! `{"detail": "...", "error": "invalid_token", "request_id": "..."}`.

use std::time::Duration;

use http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    #[schema(example = "The token is missing. Send it as `Authorization: Bearer <token>`.")]
    pub detail: String,
    /// A stable code for programs.
    #[schema(example = "missing_token")]
    pub error: String,
    /// The id of this request, as in the `X-Request-Id` header and the logs.
    #[schema(example = "f3c1a8e0-8d0e-4a57-9f3e-2d1b0c9e7a11")]
    pub request_id: String,
}

/// An error answer: a status, a code, a message for the caller and optional headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Seconds the caller should wait before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401: answered with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", detail)
    }

    /// 500: the caller learns nothing of the cause; log it before answering.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server failed to handle this request. Quote the request id when you report it.",
        )
    }

    /// 503 with `Retry-After`: a service this API depends on is unreachable or failing.
    pub fn unavailable(code: &'static str, detail: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = ErrorBody {
            detail: self.detail,
            error: self.code.to_owned(),
            request_id: request_id.to_owned(),
        };
        let mut builder = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json");
        if self.status == StatusCode::UNAUTHORIZED {
            builder = builder.header(header::WWW_AUTHENTICATE, r#"Bearer realm="rexec""#);
        }
        if let Some(wait) = self.retry_after {
            builder = builder.header(header::RETRY_AFTER, wait.as_secs().max(1).to_string());
        }
        builder
            .body(Body::Text(
                serde_json::to_string(&body).expect("error bodies serialise"),
            ))
            .expect("a response built from valid parts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).unwrap()
    }

    #[test]
    fn unauthorized_carries_the_bearer_challenge() {
        let resp = ApiError::unauthorized("invalid_token", "expired").into_response("rid-1");
        assert_eq!(resp.status(), 401);
        assert!(
            resp.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let body = body_json(&resp);
        assert_eq!(body["detail"], "expired");
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["request_id"], "rid-1");
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let resp = ApiError::unavailable("identity_unavailable", "down", Duration::from_millis(200)).into_response("r");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let resp = ApiError::internal().into_response("r");
        assert_eq!(resp.status(), 500);
        assert_eq!(body_json(&resp)["error"], "internal_error");
    }
}
