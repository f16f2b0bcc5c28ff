//! Turning the claims an identity provider returns into an [`Identity`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{Identity, IdentityError};

/// Reads `sub`; `username`, else `preferred_username`, else the subject; `groups` as strings
/// or `{path, name}` objects; `roles`, else Keycloak's `realm_access.roles`; `exp`.
pub fn identity_from_claims(claims: &Value) -> Result<Identity, IdentityError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IdentityError::Invalid("the token names no subject (sub)".into()))?;
    let username = ["username", "preferred_username"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or(sub);
    let groups = strings(claims.get("groups"), |item| {
        item.get("path").or_else(|| item.get("name")).and_then(Value::as_str)
    });
    let roles = match claims.get("roles") {
        Some(roles @ Value::Array(_)) => strings(Some(roles), |_| None),
        _ => strings(claims.pointer("/realm_access/roles"), |_| None),
    };
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_f64)
        .filter(|exp| exp.is_finite() && *exp >= 0.0)
        .map(|exp| UNIX_EPOCH + Duration::from_secs_f64(exp));
    Ok(Identity {
        sub: sub.to_owned(),
        username: username.to_owned(),
        roles,
        groups,
        expires_at,
    })
}

fn strings(value: Option<&Value>, from_object: impl Fn(&Value) -> Option<&str>) -> Vec<String> {
    let Some(Value::Array(items)) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(s) => Some(s.as_str()),
            Value::Object(_) => from_object(item),
            _ => None,
        })
        .map(str::to_owned)
        .collect()
}

/// Whether an identity's token has expired at `now`.
pub(crate) fn is_expired(identity: &Identity, now: SystemTime) -> bool {
    identity.expires_at.is_some_and(|exp| exp <= now)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn seed_answer_shape() {
        let id = identity_from_claims(&json!({
            "sub": "u-1", "username": "alice", "roles": ["user"], "groups": ["/ndp_ep/ep-1"]
        }))
        .unwrap();
        assert_eq!((id.sub.as_str(), id.username.as_str()), ("u-1", "alice"));
        assert_eq!(id.roles, vec!["user"]);
        assert_eq!(id.groups, vec!["/ndp_ep/ep-1"]);
        assert_eq!(id.expires_at, None);
    }

    #[test]
    fn keycloak_shapes() {
        let id = identity_from_claims(&json!({
            "sub": "u-2", "preferred_username": "bob", "exp": 2_000_000_000,
            "realm_access": {"roles": ["offline_access", "admin"]},
            "groups": [{"path": "/ndp_ep/ep-2", "name": "ep-2"}, {"name": "plain"}, 7]
        }))
        .unwrap();
        assert_eq!(id.username, "bob");
        assert_eq!(id.roles, vec!["offline_access", "admin"]);
        assert_eq!(id.groups, vec!["/ndp_ep/ep-2", "plain"]);
        assert_eq!(id.expires_at, Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
    }

    #[test]
    fn a_token_without_subject_is_refused() {
        for claims in [json!({"username": "x"}), json!({"sub": ""}), json!({"sub": 5})] {
            assert!(
                matches!(identity_from_claims(&claims), Err(IdentityError::Invalid(_))),
                "{claims}"
            );
        }
    }

    #[test]
    fn username_falls_back_to_the_subject() {
        assert_eq!(identity_from_claims(&json!({"sub": "s"})).unwrap().username, "s");
    }
}
