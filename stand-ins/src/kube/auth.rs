//! Who may call: the bearer token every request carries (a fixed token, or a well-formed EKS
//! token), and RBAC once enforced: grants per token, cluster-wide or in one namespace, 403
//! Forbidden as RBAC words it for anything else.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::{digest, hmac};

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
/// and signed with the credentials for this cluster. The signature is verified here from
/// AWS's specification of SigV4 (canonical request, string to sign, HMAC key chain), not with
/// the signer of the code under test; `tests/tests/eks.rs` shows botocore's tokens accepted.
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
    let host = format!("sts.{region}.amazonaws.com");
    if url.scheme() != "https" || url.host_str() != Some(&host) || url.path() != "/" {
        return Err(format!("not an STS URL of {region}"));
    }
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("no {k}"))
    };
    if get("Action")? != "GetCallerIdentity" || get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err("not a SigV4 GetCallerIdentity".into());
    }
    if get("X-Amz-SignedHeaders")? != "host;x-k8s-aws-id" {
        return Err("the cluster header is not signed".into());
    }
    let date = get("X-Amz-Date")?;
    let signed_at = amz_date(date).ok_or("bad X-Amz-Date")?;
    let age = SystemTime::now().duration_since(signed_at).unwrap_or_default();
    if age > Duration::from_secs(15 * 60) {
        return Err("the token has expired".into());
    }
    let scope = format!("{}/{region}/sts/aws4_request", &date[..8]);
    if get("X-Amz-Credential")? != format!("{}/{scope}", credentials.access_key_id()) {
        return Err("signed with other credentials".into());
    }
    if get("X-Amz-Security-Token").ok() != credentials.session_token() {
        return Err("another session's token".into());
    }
    let mut query: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| name != "X-Amz-Signature")
        .map(|(name, value)| (uri_encode(name), uri_encode(value)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical = format!(
        "GET\n/\n{query}\nhost:{host}\nx-k8s-aws-id:{cluster}\n\nhost;x-k8s-aws-id\n{}",
        hex(digest::digest(&digest::SHA256, b"").as_ref())
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", credentials.secret_access_key()).into_bytes();
    for part in [&date[..8], region, "sts", "aws4_request", &to_sign] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    if hex(&key) != get("X-Amz-Signature")? {
        return Err(format!("the signature is not for cluster {cluster}"));
    }
    Ok(())
}

/// An `X-Amz-Date` (`20261206T145000Z`) as a time.
fn amz_date(date: &str) -> Option<SystemTime> {
    let digits = |range: std::ops::Range<usize>| date.get(range).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, s) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if date.len() != 16 || &date[8..9] != "T" || &date[15..] != "Z" {
        return None;
    }
    humantime::parse_rfc3339(&format!("{y}-{mo}-{d}T{h}:{mi}:{s}Z")).ok()
}

/// SigV4's URI encoding: every byte but the unreserved characters as `%XX`.
fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
