//! The one error type of every API, rendered as JSON, and the one place where each domain
//! error gets its status, code and words.
//!
//! The body keeps FastAPI's `detail` so existing clients read it as before, and adds a stable
//! machine-readable `error` code and the `request_id` to quote in a support request:
//! `{"detail": "...", "error": "invalid_token", "request_id": "..."}`.

use std::time::Duration;

use http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cluster::ClusterError;
use crate::identity::IdentityError;
use crate::identity::access::AccessError;
use crate::server::error::ServerError;
use crate::server::requirements::RequirementsError;

/// How long a caller is asked to wait after the cluster failed to answer.
const CLUSTER_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a caller is asked to wait when the identity provider is unavailable.
const IDENTITY_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a caller is asked to wait when the broker's address is not known.
const BROKER_RETRY_AFTER: Duration = Duration::from_secs(30);

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

    /// How the audit trail words a change that ended with this error: `refused` (4xx) or
    /// `error`.
    pub fn outcome(&self) -> &'static str {
        if self.status.is_client_error() {
            "refused"
        } else {
            "error"
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

    /// 429 with `Retry-After`: the caller asks for more than the service takes on now.
    pub fn too_many_requests(code: &'static str, detail: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
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

impl From<AccessError> for ApiError {
    fn from(err: AccessError) -> Self {
        match err {
            AccessError::Identity(IdentityError::Invalid(reason)) => {
                ApiError::unauthorized("invalid_token", format!("The token was refused: {reason}."))
            }
            AccessError::Identity(IdentityError::Unavailable(_)) => ApiError::unavailable(
                "identity_unavailable",
                "The identity service cannot be reached right now. Try again shortly.",
                IDENTITY_RETRY_AFTER,
            ),
            AccessError::NotAllowed => {
                ApiError::forbidden("You are not a member of a group allowed to use this service.")
            }
            AccessError::NotAdmin => ApiError::new(
                StatusCode::FORBIDDEN,
                "not_admin",
                "This route is for administrators (ADMIN_GROUP_NAMES) only.",
            ),
        }
    }
}

impl From<RequirementsError> for ApiError {
    fn from(err: RequirementsError) -> Self {
        let detail = err.to_string();
        match err {
            RequirementsError::TooMany { .. } => ApiError::payload_too_large(detail),
            RequirementsError::Line { .. } => ApiError::bad_request("invalid_requirement", detail),
            RequirementsError::MissingPython { .. } => ApiError::bad_request("missing_python_version", detail),
        }
    }
}

impl From<ServerError> for ApiError {
    fn from(err: ServerError) -> Self {
        match err {
            ServerError::Cluster(err) => err.into(),
            ServerError::NamespaceTaken => ApiError::conflict(
                "namespace_taken",
                "A namespace with your server's name exists and is not yours. Ask an administrator.",
            ),
            ServerError::DifferentRequirements { running } => ApiError::conflict(
                "different_requirements",
                format!(
                    "Your server runs other requirements ({}). Send force_reinstall=True to replace it (a running job is interrupted), or terminate it first.",
                    running.join(", ")
                ),
            ),
            ServerError::BrokenClaim => ApiError::internal(),
            ServerError::BadContinue => ApiError::bad_request(
                "invalid_continue",
                "The continue token is invalid or has expired. List again from the first page.",
            ),
            ServerError::BuildInProgress { retry_after } => ApiError::too_many_requests(
                "build_in_progress",
                "An environment you asked for is still being built, and one build at a time is started for each caller. Try again when it has ended, or ask for the same requirements.",
                retry_after,
            ),
            ServerError::BuildsBusy { retry_after } => ApiError::too_many_requests(
                "builds_busy",
                "As many environments are being built as the service allows. Try again shortly.",
                retry_after,
            ),
            ServerError::BrokerUnavailable(detail) => {
                ApiError::unavailable("broker_unavailable", detail, BROKER_RETRY_AFTER)
            }
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(err: ClusterError) -> Self {
        match err {
            ClusterError::Unavailable(reason) => {
                tracing::warn!(%reason, "cluster unavailable");
                ApiError::unavailable(
                    "cluster_unavailable",
                    "The cluster cannot be reached right now. Try again shortly.",
                    CLUSTER_RETRY_AFTER,
                )
            }
            ClusterError::NotReady(reason) => {
                tracing::warn!(%reason, "the namespace's admission was not ready in time");
                ApiError::unavailable(
                    "cluster_unavailable",
                    "The cluster is still preparing your server's namespace. Try again in a moment.",
                    Duration::from_secs(1),
                )
            }
            ClusterError::Terminating => ApiError {
                retry_after: Some(Duration::from_secs(10)),
                ..ApiError::conflict(
                    "server_terminating",
                    "Your previous server is still being removed. Try again in a few seconds.",
                )
            },
            ClusterError::QuotaExceeded(message) => {
                tracing::warn!(%message, "the caller's namespace is at its quota");
                ApiError {
                    retry_after: Some(Duration::from_secs(10)),
                    ..ApiError::conflict(
                        "quota_exceeded",
                        "Your server's namespace is at its resource quota (a previous server may still be stopping). Try again shortly.",
                    )
                }
            }
            ClusterError::Conflict(_) => ApiError::conflict(
                "concurrent_change",
                "Your server was changed by another request at the same time. Try again.",
            ),
            ClusterError::Forbidden(message) => {
                tracing::error!(permission = %message, "the cluster role is missing a permission (see deploy/k8s)");
                ApiError::internal()
            }
            other => {
                tracing::error!(error = %other, "unexpected answer from the cluster");
                ApiError::internal()
            }
        }
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

    #[test]
    fn each_domain_error_has_its_answer() {
        let cases: Vec<(ApiError, u16, &str, bool)> = vec![
            (
                ClusterError::QuotaExceeded("exceeded quota: rexec-quota".into()).into(),
                409,
                "quota_exceeded",
                true,
            ),
            (
                ClusterError::Forbidden("cannot create pods".into()).into(),
                500,
                "internal_error",
                false,
            ),
            (ClusterError::Terminating.into(), 409, "server_terminating", true),
            (
                ClusterError::Unavailable("timeout".into()).into(),
                503,
                "cluster_unavailable",
                true,
            ),
            (
                ClusterError::Conflict("stale".into()).into(),
                409,
                "concurrent_change",
                false,
            ),
            (ServerError::NamespaceTaken.into(), 409, "namespace_taken", false),
            (
                ServerError::BuildInProgress {
                    retry_after: Duration::from_secs(40),
                }
                .into(),
                429,
                "build_in_progress",
                true,
            ),
            (
                ServerError::BuildsBusy {
                    retry_after: Duration::from_secs(30),
                }
                .into(),
                429,
                "builds_busy",
                true,
            ),
            (ServerError::BrokenClaim.into(), 500, "internal_error", false),
            (
                ServerError::BrokerUnavailable("no address").into(),
                503,
                "broker_unavailable",
                true,
            ),
            (
                RequirementsError::TooMany { max: 3 }.into(),
                413,
                "payload_too_large",
                false,
            ),
            (
                RequirementsError::Line {
                    line: 2,
                    reason: "r".into(),
                }
                .into(),
                400,
                "invalid_requirement",
                false,
            ),
            (
                RequirementsError::MissingPython { offered: "3.11".into() }.into(),
                400,
                "missing_python_version",
                false,
            ),
            (
                AccessError::Identity(IdentityError::Invalid("expired".into())).into(),
                401,
                "invalid_token",
                false,
            ),
            (
                AccessError::Identity(IdentityError::Unavailable("down".into())).into(),
                503,
                "identity_unavailable",
                true,
            ),
            (AccessError::NotAllowed.into(), 403, "forbidden", false),
        ];
        for (answer, status, code, retry) in cases {
            assert_eq!((answer.status.as_u16(), answer.code), (status, code), "{answer:?}");
            assert_eq!(answer.retry_after.is_some(), retry, "{answer:?}");
        }
        let running = ServerError::DifferentRequirements {
            running: vec!["python==3.11".into(), "numpy".into()],
        };
        let answer = ApiError::from(running);
        assert_eq!((answer.status.as_u16(), answer.code), (409, "different_requirements"));
        assert!(answer.detail.contains("python==3.11, numpy") && answer.detail.contains("force_reinstall=True"));
    }
}
