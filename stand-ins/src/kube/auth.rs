//! Who may call: the bearer token every request carries (a fixed token, or a well-formed EKS
//! token), and RBAC once enforced: grants per token, cluster-wide or in one namespace, 403
//! Forbidden as RBAC words it for anything else.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::json;

use super::status::{Target, status};

/// What the bearer token of every request must be.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    Any,
    Exact(String),
    /// An EKS token for `cluster`: a presigned STS GetCallerIdentity URL for `region`, signed
    /// less than 15 minutes ago with `credentials` over the header `x-k8s-aws-id: <cluster>`.
    Eks {
        cluster: String,
        region: String,
        credentials: aws_credential_types::Credentials,
    },
}

/// (API group, resource, RBAC verb).
pub type Permission = (String, String, String);

/// An RBAC rule as a ClusterRole (any namespace) or a Role (`namespace`) grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permission: Permission,
    pub namespace: Option<String>,
}

pub(super) fn verb_of(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", false) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// 403 as RBAC answers it: the caller may not use `verb` on the target.
pub(super) fn forbidden(target: &Target, verb: &str) -> Response {
    // A subresource's refusal names its resource and the object (`pods "x"` for `pods/log`).
    let resource = target.resource.split('/').next().unwrap_or_default();
    let object = match &target.name {
        Some(name) => format!("{resource} \"{name}\""),
        None => resource.to_owned(),
    };
    let message = format!(
        "{object} is forbidden: User \"rexec-lambda\" cannot {verb} resource \"{}\" in API group \"{}\"{}",
        target.resource,
        target.group,
        if target.namespace.is_empty() {
            String::new()
        } else {
            format!(" in the namespace \"{}\"", target.namespace)
        }
    );
    status(
        403,
        "Forbidden",
        message,
        match &target.name {
            Some(name) => json!({"name": name, "kind": resource, "group": target.group}),
            None => json!({"kind": resource, "group": target.group}),
        },
    )
}

pub(super) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

pub(super) fn check_token(check: &TokenCheck, token: &str) -> Result<(), String> {
    match check {
        TokenCheck::Any => Ok(()),
        TokenCheck::Exact(expected) if token == expected => Ok(()),
        TokenCheck::Exact(_) => Err("invalid bearer token".into()),
        TokenCheck::Eks {
            cluster,
            region,
            credentials,
        } => check_eks_token(token, cluster, region, credentials),
    }
}

/// Checks an EKS token as the EKS authenticator would, short of calling STS: a presigned
/// GetCallerIdentity URL of the region, the cluster header signed, less than 15 minutes old,
/// and signed with the credentials for this cluster. The signature is recomputed with the
/// shared library's signer, which `tests/tests/eks.rs` checks against botocore's presigner.
fn check_eks_token(
    token: &str,
    cluster: &str,
    region: &str,
    credentials: &aws_credential_types::Credentials,
) -> Result<(), String> {
    use base64::Engine;
    let encoded = token.strip_prefix("k8s-aws-v1.").ok_or("not an EKS token")?;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| "not base64url")?;
    let url = url::Url::parse(std::str::from_utf8(&url).map_err(|_| "not UTF-8")?).map_err(|_| "not a URL")?;
    if url.host_str() != Some(&format!("sts.{region}.amazonaws.com")) {
        return Err(format!("not an STS URL of {region}"));
    }
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let get = |k: &str| query.get(k).map(String::as_str).ok_or(format!("no {k}"));
    if get("Action")? != "GetCallerIdentity" {
        return Err("not GetCallerIdentity".into());
    }
    if !get("X-Amz-SignedHeaders")?.split(';').any(|h| h == "x-k8s-aws-id") {
        return Err("the cluster header is not signed".into());
    }
    let date = get("X-Amz-Date")?;
    let signed_at = humantime::parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &date[0..4],
        &date[4..6],
        &date[6..8],
        &date[9..11],
        &date[11..13],
        &date[13..15]
    ))
    .map_err(|_| "bad X-Amz-Date")?;
    let age = SystemTime::now().duration_since(signed_at).unwrap_or_default();
    if age > Duration::from_secs(15 * 60) {
        return Err("the token has expired".into());
    }
    let expected = rexec_shared::cluster::eks::token(credentials, region, cluster, signed_at)?;
    let expected_url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&expected["k8s-aws-v1.".len()..])
        .unwrap();
    let expected_url = url::Url::parse(std::str::from_utf8(&expected_url).unwrap()).unwrap();
    let expected_signature = expected_url
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned());
    if expected_signature.as_deref() != Some(get("X-Amz-Signature")?) {
        return Err(format!("the signature is not for cluster {cluster}"));
    }
    Ok(())
}

/// Whether `grants` (RBAC, when enforced) let `token` use `permission` in `namespace`.
pub(super) fn granted(
    grants: Option<&HashMap<String, Vec<Grant>>>,
    token: &str,
    permission: &Permission,
    namespace: &str,
) -> bool {
    grants.is_none_or(|grants| {
        grants.get(token).is_some_and(|rules| {
            rules
                .iter()
                .any(|g| g.permission == *permission && g.namespace.as_ref().is_none_or(|ns| ns == namespace))
        })
    })
}
