//! Local JWT verification against the keys the issuer publishes.
//!
//! The issuer's OIDC discovery document names its `jwks_uri`; keys are fetched on first use and
//! kept. A token signed with an unknown `kid` makes one refetch (keys rotate), at most once per
//! `AUTH_JWKS_REFRESH_SECONDS`, so a flood of forged `kid`s cannot flood the issuer. Until the
//! keys have been fetched once, a failing issuer answers "unavailable" (503), asked again at most
//! once a second. Only the asymmetric algorithms RS256, ES256 and EdDSA are accepted: `alg: none`
//! and HMAC are refused. Only access tokens are: an RFC 9068 `at+jwt` header or Keycloak's
//! `typ: Bearer` claim; ID and refresh tokens are refused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use super::claims::require_access_token;
use super::{Identity, IdentityError, TokenValidator, identity_from_claims, unavailable};
use crate::config::{ConfigError, Vars};

const ACCEPTED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// The most clock skew a setting may allow.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// How often an issuer whose keys were never fetched is asked again.
const FIRST_FETCH_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// `AUTH_ISSUER`: the `iss` every token must carry, and where discovery starts.
    pub issuer: Url,
    /// `AUTH_AUDIENCE`: the accepted `aud` values (comma-separated; at least one).
    pub audiences: Vec<String>,
    /// `AUTH_LEEWAY_SECONDS` (default 30): clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// `AUTH_JWKS_REFRESH_SECONDS` (default 60): the least time between two key fetches.
    pub refresh_interval: Duration,
}

impl JwksSettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let issuer = vars
            .url("AUTH_ISSUER")?
            .ok_or_else(|| ConfigError::new("AUTH_ISSUER", "is required but not set"))?;
        let audiences = vars.list("AUTH_AUDIENCE");
        if audiences.is_empty() {
            return Err(ConfigError::new(
                "AUTH_AUDIENCE",
                "is required with AUTH_ISSUER: the audience tokens are issued for",
            ));
        }
        let leeway = vars.seconds_or("AUTH_LEEWAY_SECONDS", Duration::from_secs(30))?;
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::new("AUTH_LEEWAY_SECONDS", "must be at most 300"));
        }
        Ok(Self {
            issuer,
            audiences,
            leeway,
            refresh_interval: vars.seconds_or("AUTH_JWKS_REFRESH_SECONDS", Duration::from_secs(60))?,
        })
    }

    /// The issuer exactly as tokens carry it: Keycloak issuers have no trailing slash.
    fn issuer_claim(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<Url>,
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    without_kid: Vec<(Algorithm, DecodingKey)>,
    fetched_at: Option<Instant>,
    /// Whether a key set was ever fetched.
    loaded: bool,
}

pub struct JwksValidator {
    client: reqwest::Client,
    settings: JwksSettings,
    keys: Mutex<Keys>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: Url,
}

impl JwksValidator {
    pub fn new(client: reqwest::Client, settings: JwksSettings) -> Self {
        // The process-wide provider; an error only means it is installed already.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        Self {
            client,
            settings,
            keys: Mutex::new(Keys::default()),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url, what: &str) -> Result<T, IdentityError> {
        let response = self.client.get(url).send().await.map_err(|e| unavailable(what, &e))?;
        if !response.status().is_success() {
            return Err(IdentityError::Unavailable(format!(
                "{what} answered {}",
                response.status()
            )));
        }
        response.json().await.map_err(|e| unavailable(what, &e))
    }

    async fn refresh(&self, keys: &mut Keys) -> Result<(), IdentityError> {
        keys.fetched_at = Some(Instant::now());
        let jwks_uri = match &keys.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let base = self.settings.issuer_claim();
                let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
                    .map_err(|_| IdentityError::Unavailable("the issuer URL cannot be extended".into()))?;
                let discovery: Discovery = self.get_json(url, "the issuer's discovery document").await?;
                if discovery.issuer.trim_end_matches('/') != base {
                    tracing::error!(discovered = %discovery.issuer, "the discovery document names another issuer than AUTH_ISSUER");
                    return Err(IdentityError::Unavailable(
                        "the issuer's discovery document names another issuer".into(),
                    ));
                }
                keys.jwks_uri = Some(discovery.jwks_uri.clone());
                discovery.jwks_uri
            }
        };
        let set: JwkSet = self.get_json(jwks_uri, "the issuer's key set").await?;
        keys.by_kid.clear();
        keys.without_kid.clear();
        for jwk in &set.keys {
            let Some((alg, key)) = decoding_key(jwk) else { continue };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), (alg, key));
                }
                None => keys.without_kid.push((alg, key)),
            }
        }
        keys.loaded = true;
        Ok(())
    }

    /// The key for a token's header, refetching once (rate-limited) when the `kid` is unknown.
    /// Until a key set has been fetched, no token can be judged: that is "unavailable".
    async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, IdentityError> {
        let mut keys = self.keys.lock().await;
        let wait = if keys.loaded {
            self.settings.refresh_interval
        } else {
            FIRST_FETCH_RETRY
        };
        let due = keys.fetched_at.is_none_or(|at| at.elapsed() >= wait);
        if due && (!keys.loaded || find(&keys, kid, alg).is_none()) {
            self.refresh(&mut keys).await?;
        }
        if !keys.loaded {
            return Err(IdentityError::Unavailable(
                "the issuer's keys could not be fetched yet".into(),
            ));
        }
        find(&keys, kid, alg).ok_or_else(|| IdentityError::Invalid("the token is signed with an unknown key".into()))
    }
}

fn find(keys: &Keys, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let (key_alg, key) = match kid {
        Some(kid) => keys.by_kid.get(kid)?,
        None => match keys.without_kid.as_slice() {
            [only] => only,
            _ => return None,
        },
    };
    (*key_alg == alg).then(|| key.clone())
}

/// The algorithm a published key is for, and the key; keys for other uses are skipped.
fn decoding_key(jwk: &Jwk) -> Option<(Algorithm, DecodingKey)> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, PublicKeyUse};
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    let declared_fits = match jwk.common.key_algorithm {
        None => true,
        Some(declared) => matches!(
            (declared, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        ),
    };
    if !declared_fits {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|key| (alg, key))
}

#[async_trait]
impl TokenValidator for JwksValidator {
    async fn validate(&self, token: &str) -> Result<Identity, IdentityError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| IdentityError::Invalid("the token is not a well-formed JWT".into()))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(IdentityError::Invalid("the signing algorithm is not accepted".into()));
        }
        let at_jwt = match header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("at+jwt" | "application/at+jwt") => true,
            None | Some("jwt") => false,
            Some(_) => return Err(IdentityError::Invalid("only access tokens are accepted".into())),
        };
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[self.settings.issuer_claim()]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token is from another issuer",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token cannot be verified",
            };
            IdentityError::Invalid(reason.into())
        })?;
        require_access_token(&data.claims, at_jwt)?;
        identity_from_claims(&data.claims)
    }
}
