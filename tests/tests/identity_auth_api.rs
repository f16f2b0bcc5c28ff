//! The `AUTH_API_URL` validator against the identity-service stand-in, both methods.

use std::time::{Duration, Instant};

use rexec_shared::config::Vars;
use rexec_shared::identity::{Authenticator, IdentityError, IdentitySettings};
use rexec_stand_ins::identity_service::{Fault, IdentityService, dev_users};

fn authenticator(url: &str, method: &str, extra: &[(&str, &str)]) -> Authenticator {
    let mut vars = vec![("AUTH_API_URL", url), ("AUTH_API_METHOD", method)];
    vars.extend_from_slice(extra);
    IdentitySettings::from_vars(&Vars::from_pairs(vars))
        .unwrap()
        .authenticator()
        .unwrap()
}

const METHODS: [&str; 2] = ["GET", "POST"];

#[tokio::test]
async fn both_methods_accept_a_valid_token_and_read_its_claims() {
    let service = IdentityService::start(dev_users()).await;
    for method in METHODS {
        let token = service.issue("bob", None);
        let identity = authenticator(&service.url(), method, &[])
            .authenticate(&token)
            .await
            .unwrap();
        assert_eq!(identity.sub, "bob-0000-4000-8000-000000000001", "{method}");
        assert_eq!(identity.username, "bob");
        assert_eq!(identity.groups, vec!["/ndp_ep/ep-dev", "/ndp_ep/admins"]);
        assert_eq!(identity.roles, vec!["user", "admin"]);
    }
}

#[tokio::test]
async fn both_methods_refuse_unknown_and_expired_tokens() {
    let service = IdentityService::start(dev_users()).await;
    let expired = service.issue("alice", Some(Duration::ZERO));
    for method in METHODS {
        let auth = authenticator(&service.url(), method, &[]);
        for token in ["nobody-knows-this", expired.as_str()] {
            let err = auth.authenticate(token).await.unwrap_err();
            assert!(matches!(err, IdentityError::Invalid(_)), "{method} {token}: {err:?}");
        }
    }
}

#[tokio::test]
async fn a_failing_service_is_unavailable_not_invalid() {
    let service = IdentityService::start(dev_users()).await;
    let token = service.issue("alice", None);
    service.set_fault(Fault::ServerError);
    for method in METHODS {
        let err = authenticator(&service.url(), method, &[])
            .authenticate(&token)
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::Unavailable(_)), "{method}: {err:?}");
    }
}

#[tokio::test]
async fn a_slow_service_is_unavailable_within_the_timeout() {
    let service = IdentityService::start(dev_users()).await;
    let token = service.issue("alice", None);
    service.set_fault(Fault::Delay(Duration::from_secs(10)));
    let auth = authenticator(&service.url(), "GET", &[("AUTH_TIMEOUT_SECONDS", "0.3")]);
    let started = Instant::now();
    let err = auth.authenticate(&token).await.unwrap_err();
    assert!(matches!(err, IdentityError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for a 0.3 s timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stopped_service_is_unavailable() {
    let service = IdentityService::start(dev_users()).await;
    let token = service.issue("alice", None);
    service.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = authenticator(&service.url(), "POST", &[])
        .authenticate(&token)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn many_requests_with_one_token_make_one_identity_call() {
    let service = IdentityService::start(dev_users()).await;
    let auth = authenticator(&service.url(), "GET", &[]);
    let token = service.issue("alice", None);
    for _ in 0..20 {
        assert_eq!(auth.authenticate(&token).await.unwrap().username, "alice");
    }
    assert_eq!(service.calls(), 1);
    auth.authenticate(&service.issue("bob", None)).await.unwrap();
    assert_eq!(service.calls(), 2, "another token is another call");
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let service = IdentityService::start(dev_users()).await;
    let auth = authenticator(&service.url(), "GET", &[("AUTH_CACHE_TTL_SECONDS", "0")]);
    let token = service.issue("alice", None);
    for _ in 0..3 {
        auth.authenticate(&token).await.unwrap();
    }
    assert_eq!(service.calls(), 3);
}

#[tokio::test]
async fn an_expired_token_is_not_served_from_the_cache() {
    let service = IdentityService::start(dev_users()).await;
    let auth = authenticator(&service.url(), "GET", &[]);
    let token = service.issue("alice", Some(Duration::from_millis(1500)));
    auth.authenticate(&token).await.unwrap();
    auth.authenticate(&token).await.unwrap();
    assert_eq!(service.calls(), 1);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let err = auth.authenticate(&token).await.unwrap_err();
    assert!(matches!(err, IdentityError::Invalid(_)), "{err:?}");
    assert_eq!(service.calls(), 2, "the expired identity was not reused");
}

#[tokio::test]
async fn outages_are_not_cached() {
    let service = IdentityService::start(dev_users()).await;
    let auth = authenticator(&service.url(), "GET", &[]);
    let token = service.issue("alice", None);
    service.set_fault(Fault::ServerError);
    assert!(matches!(
        auth.authenticate(&token).await,
        Err(IdentityError::Unavailable(_))
    ));
    service.set_fault(Fault::None);
    assert_eq!(auth.authenticate(&token).await.unwrap().username, "alice");
    assert_eq!(service.calls(), 2);
}
