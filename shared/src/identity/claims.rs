//! Turning the claims an identity provider returns into an [`Identity`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{Identity, IdentityError};

/// Reads `sub`; `username`, else `preferred_username`, else the subject; `groups` as strings
/// or `{path, name}` objects; `roles`, else Keycloak's `realm_access.roles`; `azp`, else
/// `client_id`; a numeric `exp`, which must be a time (an expiry that is negative or beyond what a
/// clock can hold refuses the token; one that is not a number is not read).
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
    let expires_at = match claims.get("exp").and_then(Value::as_f64) {
        None => None,
        Some(secs) => Some(
            Duration::try_from_secs_f64(secs)
                .ok()
                .and_then(|after| UNIX_EPOCH.checked_add(after))
                .ok_or_else(|| IdentityError::Invalid("the token's expiry is not a valid time".into()))?,
        ),
    };
    let client = ["azp", "client_id"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .map(str::to_owned);
    Ok(Identity {
        sub: sub.to_owned(),
        username: username.to_owned(),
        roles,
        groups,
        client,
        expires_at,
    })
}

/// Refuses anything but an access token, by the claims that name a token's type: Keycloak's
/// `typ` (`Bearer` for access tokens; `Refresh`, `Offline`, `ID` for the others) and RFC 7662's
/// `token_type`. At least one must be present and every one present must say `Bearer`.
pub(crate) fn require_access_token(claims: &Value, type_in_header: bool) -> Result<(), IdentityError> {
    let named: Vec<&Value> = ["typ", "token_type"].iter().filter_map(|k| claims.get(*k)).collect();
    let all_bearer = named
        .iter()
        .all(|v| v.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
    if all_bearer && (type_in_header || !named.is_empty()) {
        Ok(())
    } else {
        Err(IdentityError::Invalid("only access tokens are accepted".into()))
    }
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
        assert_eq!(id.client, None);
    }

    #[test]
    fn out_of_range_expiry_is_refused_without_panic() {
        for exp in [json!(1e300), json!(-1), json!(f64::MAX), json!(u64::MAX)] {
            assert!(
                matches!(
                    identity_from_claims(&json!({"sub": "s", "exp": exp})),
                    Err(IdentityError::Invalid(_))
                ),
                "{exp}"
            );
        }
        for exp in [json!("soon"), json!([1])] {
            assert_eq!(
                identity_from_claims(&json!({"sub": "s", "exp": exp}))
                    .unwrap()
                    .expires_at,
                None
            );
        }
        let far = identity_from_claims(&json!({"sub": "s", "exp": 253_402_300_799_u64})).unwrap();
        assert!(far.expires_at.is_some());
    }

    #[test]
    fn the_client_is_azp_else_client_id() {
        let id = identity_from_claims(&json!({"sub": "s", "azp": "notebook", "client_id": "other"})).unwrap();
        assert_eq!(id.client.as_deref(), Some("notebook"));
        let id = identity_from_claims(&json!({"sub": "s", "client_id": "cli"})).unwrap();
        assert_eq!(id.client.as_deref(), Some("cli"));
    }

    #[test]
    fn only_access_tokens_pass() {
        for claims in [
            json!({"typ": "Bearer"}),
            json!({"token_type": "Bearer"}),
            json!({"typ": "bearer", "token_type": "Bearer"}),
        ] {
            assert!(require_access_token(&claims, false).is_ok(), "{claims}");
        }
        assert!(
            require_access_token(&json!({}), true).is_ok(),
            "an at+jwt header names it"
        );
        for claims in [
            json!({"typ": "Refresh"}),
            json!({"typ": "Offline"}),
            json!({"typ": "ID"}),
            json!({"typ": "Bearer", "token_type": "refresh_token"}),
            json!({"token_type": "DPoP"}),
            json!({"typ": 1}),
            json!({}),
        ] {
            assert!(require_access_token(&claims, false).is_err(), "{claims}");
        }
        assert!(require_access_token(&json!({"typ": "ID"}), true).is_err());
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
