//! The introspection client secret read at run time from Secrets Manager (moto's server, through
//! `AWS_ENDPOINT_URL` as on AWS), against a real OpenID provider.

use rexec_shared::config::Vars;
use rexec_shared::identity::{IdentityError, IdentitySettings};
use rexec_tests::moto::MotoServer;
use rexec_tests::oidc::OidcProvider;

#[tokio::test]
async fn the_secret_is_fetched_kept_and_fetched_again_after_a_rotation() {
    let moto = MotoServer::start().await;
    moto.export_environment();
    let provider = OidcProvider::start().await;
    moto.put_secret("rexec/introspection", "stale").await;

    let url = provider.introspection_url();
    let auth = IdentitySettings::from_vars(&Vars::from_pairs([
        ("AUTH_INTROSPECTION_URL", url.as_str()),
        ("AUTH_CLIENT_ID", provider.client_id.as_str()),
        ("AUTH_CLIENT_SECRET_ID", "rexec/introspection"),
        ("AUTH_CACHE_TTL_SECONDS", "0"),
    ]))
    .unwrap()
    .authenticator()
    .unwrap();
    let token = provider.token("alice", None, 300).await;

    // A wrong secret: the provider refuses it, and that is our outage, not the caller's fault.
    assert!(matches!(
        auth.authenticate(&token).await,
        Err(IdentityError::Unavailable(_))
    ));
    // The secret is rotated to the right value: the next call fetches it again.
    moto.put_secret("rexec/introspection", &provider.client_secret).await;
    assert_eq!(auth.authenticate(&token).await.unwrap().username, "alice");
    assert_eq!(auth.authenticate(&token).await.unwrap().sub, "alice");

    let missing = IdentitySettings::from_vars(&Vars::from_pairs([
        ("AUTH_INTROSPECTION_URL", url.as_str()),
        ("AUTH_CLIENT_ID", provider.client_id.as_str()),
        ("AUTH_CLIENT_SECRET_ID", "no/such/secret"),
    ]))
    .unwrap()
    .authenticator()
    .unwrap();
    assert!(matches!(
        missing.authenticate(&token).await,
        Err(IdentityError::Unavailable(_))
    ));
}
