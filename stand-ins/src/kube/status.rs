//! What every part of the stand-in answers with: the resources served, the target of a request,
//! and `Status` bodies as the API server words them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A parsed request path.
pub(super) struct Target {
    pub(super) resource: String,
    pub(super) namespace: String,
    pub(super) name: Option<String>,
    pub(super) group: String,
}

/// (apiVersion, kind, namespaced) of the resources served.
pub(super) fn kind_of(resource: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match resource {
        "namespaces" => ("v1", "Namespace", false),
        "nodes" => ("v1", "Node", false),
        "configmaps" => ("v1", "ConfigMap", true),
        "pods" => ("v1", "Pod", true),
        "services" => ("v1", "Service", true),
        "events" => ("v1", "Event", true),
        "resourcequotas" => ("v1", "ResourceQuota", true),
        "limitranges" => ("v1", "LimitRange", true),
        "networkpolicies" => ("networking.k8s.io/v1", "NetworkPolicy", true),
        "jobs" => ("batch/v1", "Job", true),
        "persistentvolumeclaims" => ("v1", "PersistentVolumeClaim", true),
        _ => return None,
    })
}

pub(super) fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    });
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

pub(super) fn not_found(resource: &str, name: &str) -> Response {
    status(
        404,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        json!({"name": name, "kind": resource}),
    )
}

pub(super) fn object_response(code: StatusCode, object: &Value) -> Response {
    (code, axum::Json(object.clone())).into_response()
}

pub(super) fn status_success(resource: &str, name: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "kind": resource}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) fn conflict(resource: &str, name: &str) -> Response {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        json!({"name": name, "kind": resource}),
    )
}
