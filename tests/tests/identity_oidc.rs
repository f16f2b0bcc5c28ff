//! Introspection and JWKS verification against a real OpenID provider (npm `oidc-provider`),
//! where a test needs what Keycloak does not give: the provider's signing keys, to forge tokens
//! of chosen claims and algorithms, opaque tokens, and a refresh token that introspection calls
//! active. Keycloak's own tokens meet every mode in keycloak.rs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rexec_shared::config::Vars;
use rexec_shared::identity::{Authenticator, IdentityError, IdentitySettings};
use rexec_tests::oidc::OidcProvider;
use serde_json::{Value, json};

fn jwks_authenticator(provider: &OidcProvider, extra: &[(&str, &str)]) -> Authenticator {
    let mut vars = vec![
        ("AUTH_ISSUER", provider.issuer.as_str()),
        ("AUTH_AUDIENCE", provider.audience.as_str()),
    ];
    vars.extend_from_slice(extra);
    IdentitySettings::from_vars(&Vars::from_pairs(vars))
        .unwrap()
        .authenticator()
        .unwrap()
}

fn introspection_authenticator(provider: &OidcProvider, secret: &str) -> Authenticator {
    let url = provider.introspection_url();
    IdentitySettings::from_vars(&Vars::from_pairs([
        ("AUTH_INTROSPECTION_URL", url.as_str()),
        ("AUTH_CLIENT_ID", provider.client_id.as_str()),
        ("AUTH_CLIENT_SECRET", secret),
    ]))
    .unwrap()
    .authenticator()
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token with the provider's own signing key (so the signature verifies) and chosen claims.
fn forge(provider: &OidcProvider, alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = provider.key(alg);
    let (algorithm, encoding) = match alg {
        "RS256" => (Algorithm::RS256, EncodingKey::from_rsa_pem(key.pem.as_bytes())),
        "ES256" => (Algorithm::ES256, EncodingKey::from_ec_pem(key.pem.as_bytes())),
        "EdDSA" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(key.pem.as_bytes())),
        _ => unreachable!(),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.unwrap_or(&key.kid).to_owned());
    jsonwebtoken::encode(&header, claims, &encoding.unwrap()).unwrap()
}

fn good_claims(provider: &OidcProvider) -> Value {
    json!({
        "sub": "alice", "preferred_username": "alice", "iss": provider.issuer, "aud": provider.audience,
        "iat": now(), "exp": now() + 300, "groups": ["/ndp_ep/ep-1"], "typ": "Bearer", "azp": "notebook"
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn jwt_access_tokens_of_each_algorithm_are_verified() {
    let provider = OidcProvider::start().await;
    let auth = jwks_authenticator(&provider, &[]);
    for alg in ["RS256", "ES256", "EdDSA"] {
        let token = provider.token("alice", Some(alg), 300).await;
        let identity = auth.authenticate(&token).await.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(identity.sub, "alice");
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.groups, vec!["/ndp_ep/ep-1"]);
        assert_eq!(identity.roles, vec!["user"], "roles from realm_access");
        assert!(identity.expires_at.is_some());
    }
}

#[tokio::test]
async fn opaque_tokens_are_introspected() {
    let provider = OidcProvider::start().await;
    let auth = introspection_authenticator(&provider, &provider.client_secret);
    let alice = auth
        .authenticate(&provider.token("alice", None, 300).await)
        .await
        .unwrap();
    assert_eq!((alice.sub.as_str(), alice.username.as_str()), ("alice", "alice"));
    assert_eq!(alice.groups, vec!["/ndp_ep/ep-1"]);
    let bob = auth
        .authenticate(&provider.token("bob", None, 300).await)
        .await
        .unwrap();
    assert_eq!(bob.groups, vec!["/other"], "group objects give their path");
}

#[tokio::test]
async fn introspection_accepts_access_tokens_only() {
    let provider = OidcProvider::start().await;
    let auth = introspection_authenticator(&provider, &provider.client_secret);
    let refresh = provider.refresh_token("alice").await;
    match auth.authenticate(&refresh).await {
        Err(IdentityError::Invalid(reason)) => assert_eq!(reason, "only access tokens are accepted"),
        other => panic!("a refresh token: {other:?}"),
    }
}

#[tokio::test]
async fn unacceptable_jwts_are_invalid() {
    let provider = OidcProvider::start().await;
    let auth = jwks_authenticator(&provider, &[]);
    let good = good_claims(&provider);
    let with = |patch: Value| {
        let mut claims = good.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        claims
    };
    let real = provider.token("alice", Some("RS256"), 300).await;
    let (head, rest) = real.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut bad_signature = signature.to_owned().into_bytes();
    bad_signature[10] = if bad_signature[10] == b'A' { b'B' } else { b'A' };
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(provider.key("RS256").kid.clone());
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(b"shared-secret")).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired beyond the leeway",
            forge(&provider, "RS256", None, &with(json!({"exp": now() - 120}))),
        ),
        (
            "not valid yet",
            forge(&provider, "ES256", None, &with(json!({"nbf": now() + 120}))),
        ),
        (
            "wrong issuer",
            forge(&provider, "EdDSA", None, &with(json!({"iss": "https://evil.example"}))),
        ),
        (
            "wrong audience",
            forge(&provider, "RS256", None, &with(json!({"aud": "account"}))),
        ),
        (
            "no expiry",
            forge(&provider, "RS256", None, &{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        (
            "bad signature",
            format!("{head}.{payload}.{}", String::from_utf8(bad_signature).unwrap()),
        ),
        (
            "payload swapped",
            format!("{head}.{}.{signature}", b64(&with(json!({"sub": "mallory"})))),
        ),
        ("unknown kid", forge(&provider, "RS256", Some("rotated-away"), &good)),
        ("key of another algorithm", {
            let es = forge(&provider, "ES256", None, &good);
            let (_, rest) = es.split_once('.').unwrap();
            format!(
                "{}.{rest}",
                b64(&json!({"alg": "ES256", "kid": provider.key("RS256").kid}))
            )
        }),
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good)),
        ),
        ("HMAC", hs256),
        ("garbage", "garbage".into()),
        ("three dots of garbage", "a.b.c".into()),
        ("opaque token", provider.token("alice", None, 300).await),
        (
            "Keycloak ID token",
            forge(&provider, "RS256", None, &with(json!({"typ": "ID", "nonce": "n"}))),
        ),
        (
            "Keycloak refresh token",
            forge(&provider, "ES256", None, &with(json!({"typ": "Refresh"}))),
        ),
        (
            "Keycloak offline token",
            forge(&provider, "EdDSA", None, &with(json!({"typ": "Offline"}))),
        ),
        (
            "a JWT that names no type",
            forge(&provider, "RS256", None, &{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("typ");
                c
            }),
        ),
        (
            "out-of-range expiry",
            forge(&provider, "RS256", None, &with(json!({"exp": 1e300}))),
        ),
    ];
    for (case, token) in cases {
        match auth.authenticate(&token).await {
            Err(IdentityError::Invalid(_)) => {}
            other => panic!("{case}: expected invalid, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn small_clock_skew_is_tolerated() {
    let provider = OidcProvider::start().await;
    let auth = jwks_authenticator(&provider, &[]);
    let mut claims = good_claims(&provider);
    claims["exp"] = json!(now() - 5);
    claims["nbf"] = json!(now() + 5);
    assert_eq!(
        auth.authenticate(&forge(&provider, "RS256", None, &claims))
            .await
            .unwrap()
            .sub,
        "alice"
    );
}

#[tokio::test]
async fn an_unknown_kid_makes_one_rate_limited_refetch() {
    let provider = OidcProvider::start().await;
    let auth = jwks_authenticator(&provider, &[("AUTH_JWKS_REFRESH_SECONDS", "1")]);
    auth.authenticate(&provider.token("alice", Some("ES256"), 300).await)
        .await
        .unwrap();
    assert_eq!(provider.jwks_fetches().await, 1);
    auth.authenticate(&provider.token("bob", Some("EdDSA"), 300).await)
        .await
        .unwrap();
    assert_eq!(provider.jwks_fetches().await, 1, "known keys are not fetched again");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forged = |kid: &str| forge(&provider, "RS256", Some(kid), &good_claims(&provider));
    assert!(auth.authenticate(&forged("new-1")).await.is_err());
    assert_eq!(provider.jwks_fetches().await, 2, "an unknown kid refetches the keys");
    for kid in ["new-2", "new-3", "new-4"] {
        assert!(auth.authenticate(&forged(kid)).await.is_err());
    }
    assert_eq!(provider.jwks_fetches().await, 2, "refetches are rate-limited");
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable() {
    let provider = OidcProvider::start().await;
    let token = provider.token("alice", Some("RS256"), 300).await;
    let auth = IdentitySettings::from_vars(&Vars::from_pairs([
        ("AUTH_ISSUER", "http://127.0.0.1:9"),
        ("AUTH_AUDIENCE", "rexec"),
    ]))
    .unwrap()
    .authenticator()
    .unwrap();
    for attempt in 0..3 {
        assert!(
            matches!(auth.authenticate(&token).await, Err(IdentityError::Unavailable(_))),
            "attempt {attempt}: never a 401 while no key was ever fetched"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}
