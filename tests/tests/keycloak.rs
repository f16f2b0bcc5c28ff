//! Each way of validating a token, against a real Keycloak and its own tokens
//! (tests/keycloak/ndp-realm.json): what each accepts, and what each refuses and why.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rexec_shared::config::Vars;
use rexec_shared::identity::{Authenticator, Identity, IdentityError, IdentitySettings};
use rexec_tests::keycloak::{self, Keycloak};
use serde_json::Value;

const GROUP: &str = "/ndp_ep/ep-test";
const REFUSED_BY_USERINFO: &str = "the identity service rejected the token";
const NOT_ACTIVE: &str = "the token is not active";

/// Why `mode` refuses a token Keycloak itself no longer vouches for: userinfo answers 401,
/// introspection "not active"; JWKS, which asks Keycloak nothing, gives `jwks`.
fn keycloaks_reason(mode: Mode, jwks: &'static str) -> &'static str {
    match mode {
        Mode::Userinfo | Mode::IdentityService => REFUSED_BY_USERINFO,
        Mode::Introspection => NOT_ACTIVE,
        Mode::Jwks => jwks,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// `AUTH_API_URL` at the realm's userinfo endpoint (GET).
    Userinfo,
    /// `AUTH_API_URL` at an identity service in front of userinfo (POST `{"token"}`).
    IdentityService,
    Introspection,
    Jwks,
}

const MODES: [Mode; 4] = [Mode::Userinfo, Mode::IdentityService, Mode::Introspection, Mode::Jwks];

/// An authenticator of `mode` for `realm`, with no identity cache unless `extra` sets one.
async fn authenticator(kc: &Keycloak, realm: &str, mode: Mode, extra: &[(&str, &str)]) -> Authenticator {
    let issuer = kc.issuer(realm);
    let userinfo = kc.endpoint(realm, "userinfo");
    let mut vars: Vec<(String, String)> = match mode {
        Mode::Userinfo => vec![("AUTH_API_URL".into(), userinfo)],
        Mode::IdentityService => vec![
            ("AUTH_API_URL".into(), keycloak::identity_service(userinfo).await),
            ("AUTH_API_METHOD".into(), "POST".into()),
        ],
        Mode::Introspection => vec![
            ("AUTH_INTROSPECTION_URL".into(), kc.endpoint(realm, "token/introspect")),
            ("AUTH_CLIENT_ID".into(), "rexec-lambda".into()),
            ("AUTH_CLIENT_SECRET".into(), "rexec-lambda-test-secret".into()),
        ],
        Mode::Jwks => vec![
            ("AUTH_ISSUER".into(), issuer),
            ("AUTH_AUDIENCE".into(), "rexec-lambda".into()),
        ],
    };
    vars.push(("AUTH_CACHE_TTL_SECONDS".into(), "0".into()));
    // Later pairs win: a test's own settings replace the defaults above.
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    IdentitySettings::from_vars(&Vars::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        .unwrap()
        .authenticator()
        .unwrap()
}

async fn accepted(auth: &Authenticator, token: &str, what: &str) -> Identity {
    auth.authenticate(token)
        .await
        .unwrap_or_else(|e| panic!("{what}: refused: {e:?}"))
}

async fn refused(auth: &Authenticator, token: &str, what: &str) -> String {
    match auth.authenticate(token).await {
        Err(IdentityError::Invalid(reason)) => reason,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    let head = token.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap()
}

#[tokio::test]
async fn each_mode_accepts_an_access_token_and_reads_its_user() {
    let Some(kc) = Keycloak::shared() else { return };
    let token = kc
        .password_grant("ndp", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    let sub = claims(&token)["sub"].as_str().unwrap().to_owned();
    for mode in MODES {
        let alice = accepted(&authenticator(kc, "ndp", mode, &[]).await, &token, &format!("{mode:?}")).await;
        assert_eq!(alice.sub, sub, "{mode:?}");
        assert_eq!(alice.username, "alice", "{mode:?}: preferred_username");
        assert_eq!(alice.groups, vec![GROUP], "{mode:?}: the full-path group mapper");
        // Userinfo does not name the client; the other two do.
        let client = matches!(mode, Mode::Introspection | Mode::Jwks).then_some("ndp-tests");
        assert_eq!(alice.client.as_deref(), client, "{mode:?}");
    }
}

#[tokio::test]
async fn userinfo_needs_the_openid_scope() {
    let Some(kc) = Keycloak::shared() else { return };
    let token = kc
        .password_grant("ndp", "ndp-tests", "alice", "profile")
        .await
        .access_token;
    for mode in [Mode::Introspection, Mode::Jwks] {
        let auth = authenticator(kc, "ndp", mode, &[]).await;
        accepted(&auth, &token, &format!("the same token, {mode:?}")).await;
    }
    for mode in [Mode::Userinfo, Mode::IdentityService] {
        let auth = authenticator(kc, "ndp", mode, &[]).await;
        assert_eq!(refused(&auth, &token, "without openid").await, REFUSED_BY_USERINFO);
    }
}

#[tokio::test]
async fn refresh_offline_and_id_tokens_are_refused_in_each_mode() {
    let Some(kc) = Keycloak::shared() else { return };
    let online = kc.password_grant("ndp", "ndp-tests", "alice", "openid").await;
    let offline = kc
        .password_grant("ndp", "ndp-tests", "alice", "openid offline_access")
        .await;
    let refresh = online.refresh_token.unwrap();
    let offline_token = offline.refresh_token.unwrap();
    let id = online.id_token.unwrap();
    assert_eq!(claims(&refresh)["typ"], "Refresh");
    assert_eq!(claims(&offline_token)["typ"], "Offline");
    assert_eq!(claims(&id)["typ"], "ID");
    for mode in MODES {
        // The ID token is for the client itself: with the client among the audiences, the
        // refusal is for its type, not its audience.
        let auth = authenticator(kc, "ndp", mode, &[("AUTH_AUDIENCE", "rexec-lambda,ndp-tests")]).await;
        accepted(&auth, &online.access_token, "the grant's access token").await;
        accepted(&auth, &offline.access_token, "the offline grant's access token").await;
        // Keycloak signs refresh and offline tokens with the realm's HMAC key (HS512).
        let signed_by_the_realms_secret = keycloaks_reason(mode, "the signing algorithm is not accepted");
        let id_reason = keycloaks_reason(mode, "only access tokens are accepted");
        assert_eq!(
            refused(&auth, &refresh, "refresh").await,
            signed_by_the_realms_secret,
            "{mode:?}"
        );
        assert_eq!(
            refused(&auth, &offline_token, "offline").await,
            signed_by_the_realms_secret,
            "{mode:?}"
        );
        assert_eq!(refused(&auth, &id, "ID").await, id_reason, "{mode:?}");
    }
}

#[tokio::test]
async fn expired_tokens_are_refused_in_each_mode() {
    let Some(kc) = Keycloak::shared() else { return };
    // This client's tokens live five seconds.
    let token = kc
        .password_grant("ndp", "ndp-tests-brief", "alice", "openid")
        .await
        .access_token;
    let no_leeway = [("AUTH_LEEWAY_SECONDS", "0")];
    let mut auths = Vec::new();
    for mode in MODES {
        let auth = authenticator(kc, "ndp", mode, &no_leeway).await;
        accepted(&auth, &token, &format!("{mode:?}, fresh")).await;
        auths.push((mode, auth));
    }
    let exp = claims(&token)["exp"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    tokio::time::sleep(Duration::from_secs(exp.saturating_sub(now) + 1)).await;
    for (mode, auth) in auths {
        let reason = keycloaks_reason(mode, "the token has expired");
        assert_eq!(refused(&auth, &token, "expired").await, reason, "{mode:?}");
    }
}

#[tokio::test]
async fn tokens_of_another_realm_are_refused_in_each_mode() {
    let Some(kc) = Keycloak::shared() else { return };
    // The same client, user, groups and audience, in another realm of the same Keycloak.
    let theirs = kc
        .password_grant("other", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    let ours = kc
        .password_grant("ndp", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    assert!(
        claims(&theirs)["aud"]
            .as_array()
            .unwrap()
            .contains(&"rexec-lambda".into())
    );
    for mode in MODES {
        let auth = authenticator(kc, "ndp", mode, &[]).await;
        accepted(&auth, &ours, "this realm's").await;
        let reason = keycloaks_reason(mode, "the token is signed with an unknown key");
        assert_eq!(refused(&auth, &theirs, "another realm's").await, reason, "{mode:?}");
    }
}

#[tokio::test]
async fn jwks_checks_the_issuer_and_the_audience() {
    let Some(kc) = Keycloak::shared() else { return };
    let token = kc
        .password_grant("ndp", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    let ours = authenticator(kc, "ndp", Mode::Jwks, &[]).await;
    accepted(&ours, &token, "for rexec-lambda").await;
    let elsewhere = authenticator(kc, "ndp", Mode::Jwks, &[("AUTH_AUDIENCE", "another-service")]).await;
    assert_eq!(
        refused(&elsewhere, &token, "for another audience").await,
        "the token is for another audience"
    );
    // The same realm and keys, reached by another name: the token names another issuer.
    let renamed = kc.password_grant_as_localhost("alice").await.access_token;
    assert!(
        claims(&renamed)["iss"]
            .as_str()
            .unwrap()
            .starts_with("http://localhost:")
    );
    assert_eq!(
        header(&renamed)["kid"],
        header(&token)["kid"],
        "signed with the same key"
    );
    assert_eq!(
        refused(&ours, &renamed, "another issuer").await,
        "the token is from another issuer"
    );
}

/// What a token of `user` meets once `revoke` has acted in Keycloak: refused by the modes
/// that ask Keycloak once the identity cache's entry (5 s here) expires, accepted by the keys
/// until the token expires.
async fn after_revocation(kc: &Keycloak, user: &str, revoke: impl AsyncFnOnce()) {
    let token = kc.password_grant("ndp", "ndp-tests", user, "openid").await.access_token;
    let ttl = Duration::from_secs(5);
    let cached = [("AUTH_CACHE_TTL_SECONDS", "5")];
    let mut auths = Vec::new();
    for mode in MODES {
        let auth = authenticator(kc, "ndp", mode, &cached).await;
        accepted(&auth, &token, &format!("{mode:?}, before")).await;
        auths.push((mode, auth));
    }
    let cached_at = std::time::Instant::now();
    revoke().await;
    for (mode, auth) in &auths {
        accepted(auth, &token, &format!("{mode:?}, from the cache")).await;
    }
    tokio::time::sleep((ttl + Duration::from_millis(100)).saturating_sub(cached_at.elapsed())).await;
    for (mode, auth) in &auths {
        match mode {
            Mode::Jwks => {
                accepted(auth, &token, "JWKS: until the token expires").await;
            }
            _ => assert_eq!(
                refused(auth, &token, "after").await,
                keycloaks_reason(*mode, ""),
                "{mode:?}"
            ),
        }
    }
}

#[tokio::test]
async fn a_disabled_users_token_is_refused_once_the_cache_entry_expires() {
    let Some(kc) = Keycloak::shared() else { return };
    let admin = kc.admin("ndp").await;
    after_revocation(kc, "dora", async || admin.set_enabled("dora", false).await).await;
}

#[tokio::test]
async fn a_logged_out_sessions_token_is_refused_once_the_cache_entry_expires() {
    let Some(kc) = Keycloak::shared() else { return };
    let admin = kc.admin("ndp").await;
    after_revocation(kc, "lou", async || admin.log_out("lou").await).await;
}

#[tokio::test]
async fn machine_users_and_the_allowed_clients() {
    let Some(kc) = Keycloak::shared() else { return };
    let machine = kc.client_credentials("kubeslice-automation").await;
    let unlisted = kc.client_credentials("unlisted-automation").await;
    let alice = kc
        .password_grant("ndp", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    let allowed = [("AUTH_ALLOWED_CLIENTS", "ndp-tests,kubeslice-automation")];
    for mode in [Mode::Introspection, Mode::Jwks] {
        let auth = authenticator(kc, "ndp", mode, &allowed).await;
        let bot = accepted(&auth, &machine, "an allowed machine user").await;
        assert_eq!(bot.username, "service-account-kubeslice-automation", "{mode:?}");
        assert_eq!(bot.groups, vec![GROUP], "{mode:?}: its service account's group");
        assert_eq!(bot.client.as_deref(), Some("kubeslice-automation"));
        accepted(&auth, &alice, "a user of an allowed client").await;
        assert_eq!(
            refused(&auth, &unlisted, "a client not allowed").await,
            "the token was issued to a client that is not allowed",
            "{mode:?}"
        );
        // Without the list, the same token passes: the list alone refused it.
        let open = authenticator(kc, "ndp", mode, &[]).await;
        accepted(&open, &unlisted, "any client").await;
    }
}

#[tokio::test]
async fn a_machine_user_set_up_as_the_docs_say() {
    let Some(kc) = Keycloak::shared() else { return };
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/keycloak/machine-user.json");
    let admin = kc.admin("ndp").await;
    admin
        .partial_import(serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap())
        .await;
    let secret = admin.client_secret("rafay-automation").await;
    let token = kc.client_credentials_with("rafay-automation", &secret).await;
    for mode in [Mode::Introspection, Mode::Jwks] {
        let auth = authenticator(kc, "ndp", mode, &[("AUTH_ALLOWED_CLIENTS", "rafay-automation")]).await;
        let bot = accepted(&auth, &token, "the new machine user").await;
        assert_eq!(bot.username, "service-account-rafay-automation", "{mode:?}");
        assert_eq!(bot.groups, vec![GROUP], "{mode:?}");
    }
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_without_a_restart() {
    let Some(kc) = Keycloak::shared() else { return };
    // In the other realm, so that no other test meets a key it has not fetched yet.
    let auth = authenticator(kc, "other", Mode::Jwks, &[("AUTH_JWKS_REFRESH_SECONDS", "1")]).await;
    let before = kc
        .password_grant("other", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    accepted(&auth, &before, "before the rotation").await;
    kc.admin("other").await.rotate_signing_key(200).await;
    let after = kc
        .password_grant("other", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    assert_ne!(header(&before)["kid"], header(&after)["kid"], "signed with the new key");
    // The key set is fetched again when a token names an unknown key, at most once a
    // refresh interval (1 s here).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    accepted(&auth, &after, "after the rotation").await;
    accepted(&auth, &before, "the old key is still published").await;
}

#[tokio::test]
async fn introspection_refuses_unknown_tokens_and_wrong_credentials_are_an_outage() {
    let Some(kc) = Keycloak::shared() else { return };
    let auth = authenticator(kc, "ndp", Mode::Introspection, &[]).await;
    for token in ["garbage", "VdREaxqTBO3W5W8ZixTTQxp62pwXqgj-gfp9Z3Shovf"] {
        assert_eq!(refused(&auth, token, token).await, NOT_ACTIVE);
    }
    let token = kc
        .password_grant("ndp", "ndp-tests", "alice", "openid")
        .await
        .access_token;
    let wrong = authenticator(
        kc,
        "ndp",
        Mode::Introspection,
        &[("AUTH_CLIENT_SECRET", "not-the-secret")],
    )
    .await;
    match wrong.authenticate(&token).await {
        Err(IdentityError::Unavailable(reason)) => {
            assert_eq!(reason, "the introspection endpoint answered 401 Unauthorized")
        }
        other => panic!("wrong client credentials: {other:?}"),
    }
}
