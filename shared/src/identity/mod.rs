//! Who is calling: bearer-token validation, the per-container identity cache, the settings
//! that choose a validator, the group policy ([`groups`]) and both together ([`access`]).
//!
//! Three validators implement [`TokenValidator`]:
//! - [`AuthApiValidator`]: the identity service at `AUTH_API_URL` (GET with the Bearer
//!   header, or POST `{"token": ...}`);
//! - [`IntrospectionValidator`]: RFC 7662 token introspection (Keycloak);
//! - [`JwksValidator`]: local JWT verification against the issuer's published keys.
//!
//! [`Authenticator`] puts the cache in front of the chosen one. A token the validator rejects is
//! [`IdentityError::Invalid`]; a validator that cannot answer is [`IdentityError::Unavailable`]:
//! the caller did nothing wrong.

pub mod access;
mod auth_api;
mod cache;
mod claims;
pub mod groups;
mod introspection;
mod jwks;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use url::Url;

pub use auth_api::{AuthApiMethod, AuthApiValidator};
pub use cache::IdentityCache;
pub use claims::identity_from_claims;
pub use introspection::{ClientSecret, IntrospectionValidator};
pub use jwks::{JwksSettings, JwksValidator};

use crate::config::{ConfigError, Vars};
use crate::metrics::{self, Metric};

/// A validated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's subject: the stable user id.
    pub sub: String,
    pub username: String,
    pub roles: Vec<String>,
    /// Group paths such as `/ndp_ep/ep-1`.
    pub groups: Vec<String>,
    /// The client the token was issued to (`azp`, else `client_id`), when the validator knows.
    pub client: Option<String>,
    /// When the token stops being valid, when the validator knows.
    pub expires_at: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The token is not acceptable: malformed, expired, revoked, wrong issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The identity provider could not be asked: timeout, refused connection, 5xx, bad answer.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait TokenValidator: Send + Sync {
    async fn validate(&self, token: &str) -> Result<Identity, IdentityError>;
}

/// A validator behind the per-container cache, with the clients tokens may be issued to.
pub struct Authenticator {
    validator: Arc<dyn TokenValidator>,
    cache: IdentityCache,
    /// `AUTH_ALLOWED_CLIENTS`: when not empty, a token's `azp` (or `client_id`) must be one.
    allowed_clients: Vec<String>,
}

impl Authenticator {
    pub fn new(validator: Arc<dyn TokenValidator>, cache: IdentityCache, allowed_clients: Vec<String>) -> Self {
        Self {
            validator,
            cache,
            allowed_clients,
        }
    }

    pub async fn authenticate(&self, token: &str) -> Result<Identity, IdentityError> {
        let key = IdentityCache::key(token);
        if let Some(cached) = self.cache.get(&key, SystemTime::now()) {
            metrics::count(Metric::IdentityCacheHits);
            return cached;
        }
        metrics::count(Metric::IdentityCacheMisses);
        let validated = metrics::Timed::new(self.validator.validate(token), Metric::IdentityLatency).await;
        if let Err(IdentityError::Unavailable(_)) = &validated {
            metrics::count(Metric::IdentityUnavailable);
        }
        let result = validated.and_then(|identity| {
            let allowed = self.allowed_clients.is_empty()
                || identity
                    .client
                    .as_ref()
                    .is_some_and(|c| self.allowed_clients.contains(c));
            if allowed {
                Ok(identity)
            } else {
                Err(IdentityError::Invalid(
                    "the token was issued to a client that is not allowed".into(),
                ))
            }
        });
        self.cache.put(key, &result, SystemTime::now());
        result
    }
}

/// Which validator answers, from `AUTH_MODE` or, when unset, from the one source configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidatorSettings {
    AuthApi {
        url: Url,
        method: AuthApiMethod,
    },
    Introspection {
        url: Url,
        client_id: String,
        client_secret: ClientSecret,
    },
    Jwks(JwksSettings),
}

/// Everything the identity layer reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    pub validator: ValidatorSettings,
    /// Budget for one call to the identity provider (`AUTH_TIMEOUT_SECONDS`, default 3).
    pub timeout: Duration,
    /// How long a validated identity is reused (`AUTH_CACHE_TTL_SECONDS`, default 60; 0 turns
    /// the cache off). Never past the token's expiry.
    pub cache_ttl: Duration,
    /// Most identities kept per container (`AUTH_CACHE_MAX_ENTRIES`, default 1024).
    pub cache_capacity: usize,
    /// `AUTH_ALLOWED_CLIENTS` (comma-separated): the clients (`azp`, else `client_id`) tokens
    /// must be issued to; empty accepts any. Introspection and JWKS modes only: the identity
    /// service at `AUTH_API_URL` does not say.
    pub allowed_clients: Vec<String>,
}

impl IdentitySettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let sources = [
            ("auth_api", vars.get("AUTH_API_URL").is_some()),
            ("introspection", vars.get("AUTH_INTROSPECTION_URL").is_some()),
            ("jwks", vars.get("AUTH_ISSUER").is_some()),
        ];
        let mode = match vars.get("AUTH_MODE") {
            Some(mode) => mode.to_ascii_lowercase(),
            None => {
                let configured: Vec<&str> = sources.iter().filter(|(_, set)| *set).map(|(m, _)| *m).collect();
                match configured.as_slice() {
                    [one] => (*one).to_owned(),
                    [] => {
                        return Err(ConfigError::new(
                            "AUTH_API_URL",
                            "no token validator is configured: set AUTH_API_URL, AUTH_INTROSPECTION_URL or AUTH_ISSUER",
                        ));
                    }
                    _ => {
                        return Err(ConfigError::new(
                            "AUTH_MODE",
                            format!(
                                "several validators are configured ({}): choose one",
                                configured.join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        let validator = match mode.as_str() {
            "auth_api" => ValidatorSettings::AuthApi {
                url: required_url(vars, "AUTH_API_URL")?,
                method: vars.parse_or("AUTH_API_METHOD", AuthApiMethod::Get)?,
            },
            "introspection" => ValidatorSettings::Introspection {
                url: required_url(vars, "AUTH_INTROSPECTION_URL")?,
                client_id: vars.required("AUTH_CLIENT_ID")?.to_owned(),
                client_secret: match (vars.get("AUTH_CLIENT_SECRET"), vars.get("AUTH_CLIENT_SECRET_ID")) {
                    (Some(secret), None) => ClientSecret::Plain(secret.to_owned()),
                    (None, Some(id)) => ClientSecret::SecretsManager(id.to_owned()),
                    _ => {
                        return Err(ConfigError::new(
                            "AUTH_CLIENT_SECRET_ID",
                            "set exactly one of AUTH_CLIENT_SECRET_ID (a Secrets Manager secret) and AUTH_CLIENT_SECRET",
                        ));
                    }
                },
            },
            "jwks" => ValidatorSettings::Jwks(JwksSettings::from_vars(vars)?),
            other => {
                return Err(ConfigError::new(
                    "AUTH_MODE",
                    format!("unknown mode {other:?}: expected auth_api, introspection or jwks"),
                ));
            }
        };
        let allowed_clients = vars.list("AUTH_ALLOWED_CLIENTS");
        if !allowed_clients.is_empty() && matches!(validator, ValidatorSettings::AuthApi { .. }) {
            return Err(ConfigError::new(
                "AUTH_ALLOWED_CLIENTS",
                "cannot be checked in auth_api mode: the identity service does not name the client",
            ));
        }
        let timeout = vars.seconds_or("AUTH_TIMEOUT_SECONDS", Duration::from_secs(3))?;
        if timeout.is_zero() {
            return Err(ConfigError::new("AUTH_TIMEOUT_SECONDS", "must be greater than zero"));
        }
        Ok(Self {
            validator,
            timeout,
            cache_ttl: vars.seconds_or("AUTH_CACHE_TTL_SECONDS", Duration::from_secs(60))?,
            cache_capacity: vars.parse_or("AUTH_CACHE_MAX_ENTRIES", 1024)?,
            allowed_clients,
        })
    }

    /// The configured validator behind its cache. Builds no connection: the provider is first
    /// contacted by the first request, so a provider outage answers 503 instead of failing init.
    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        let client = crate::https::client(self.timeout)
            .map_err(|e| ConfigError::new("AUTH_TIMEOUT_SECONDS", format!("cannot build an HTTP client: {e}")))?;
        let validator: Arc<dyn TokenValidator> = match &self.validator {
            ValidatorSettings::AuthApi { url, method } => Arc::new(AuthApiValidator::new(client, url.clone(), *method)),
            ValidatorSettings::Introspection {
                url,
                client_id,
                client_secret,
            } => Arc::new(IntrospectionValidator::new(
                client,
                url.clone(),
                client_id.clone(),
                client_secret.clone(),
            )),
            ValidatorSettings::Jwks(settings) => Arc::new(JwksValidator::new(client, settings.clone())),
        };
        Ok(Authenticator::new(
            validator,
            IdentityCache::new(self.cache_ttl, self.cache_capacity),
            self.allowed_clients.clone(),
        ))
    }
}

fn required_url(vars: &Vars, name: &str) -> Result<Url, ConfigError> {
    vars.url(name)?
        .ok_or_else(|| ConfigError::new(name, "is required but not set"))
}

/// Maps a transport failure to [`IdentityError::Unavailable`] without echoing the URL's query.
fn unavailable(what: &str, err: &reqwest::Error) -> IdentityError {
    let cause = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_decode() {
        "answered with a body that is not the expected JSON"
    } else {
        "request failed"
    };
    IdentityError::Unavailable(format!("{what} {cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_configured_source_chooses_the_mode() {
        let s = IdentitySettings::from_vars(&Vars::from_pairs([("AUTH_API_URL", "http://id/me")])).unwrap();
        assert!(matches!(
            s.validator,
            ValidatorSettings::AuthApi {
                method: AuthApiMethod::Get,
                ..
            }
        ));
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.cache_ttl, Duration::from_secs(60));
    }

    #[test]
    fn no_source_or_several_sources_fail_with_the_variable() {
        let none = IdentitySettings::from_vars(&Vars::default()).unwrap_err();
        assert_eq!(none.variable, "AUTH_API_URL");
        let two = IdentitySettings::from_vars(&Vars::from_pairs([
            ("AUTH_API_URL", "http://id/me"),
            ("AUTH_ISSUER", "http://issuer"),
        ]))
        .unwrap_err();
        assert_eq!(two.variable, "AUTH_MODE");
    }

    #[test]
    fn the_client_secret_is_plain_or_named_and_never_shown() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = vec![
                ("AUTH_INTROSPECTION_URL", "http://kc/introspect"),
                ("AUTH_CLIENT_ID", "rexec"),
            ];
            vars.extend_from_slice(extra);
            IdentitySettings::from_vars(&Vars::from_pairs(vars))
        };
        let plain = with(&[("AUTH_CLIENT_SECRET", "s3cr3t-value")]).unwrap();
        assert!(
            !format!("{plain:?}").contains("s3cr3t-value"),
            "Debug redacts the secret"
        );
        let named = with(&[("AUTH_CLIENT_SECRET_ID", "rexec/introspection")]).unwrap();
        assert!(
            matches!(named.validator, ValidatorSettings::Introspection { client_secret: ClientSecret::SecretsManager(ref id), .. } if id == "rexec/introspection")
        );
        assert_eq!(with(&[]).unwrap_err().variable, "AUTH_CLIENT_SECRET_ID");
        assert_eq!(
            with(&[("AUTH_CLIENT_SECRET", "a"), ("AUTH_CLIENT_SECRET_ID", "b")])
                .unwrap_err()
                .variable,
            "AUTH_CLIENT_SECRET_ID"
        );
    }

    #[test]
    fn explicit_mode_requires_its_settings() {
        let err = IdentitySettings::from_vars(&Vars::from_pairs([
            ("AUTH_MODE", "introspection"),
            ("AUTH_INTROSPECTION_URL", "http://kc/introspect"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "AUTH_CLIENT_ID");
        let err = IdentitySettings::from_vars(&Vars::from_pairs([("AUTH_MODE", "ldap")])).unwrap_err();
        assert_eq!(err.variable, "AUTH_MODE");
    }

    #[test]
    fn allowed_clients_need_a_validator_that_names_the_client() {
        let err = IdentitySettings::from_vars(&Vars::from_pairs([
            ("AUTH_API_URL", "http://id/me"),
            ("AUTH_ALLOWED_CLIENTS", "notebook"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "AUTH_ALLOWED_CLIENTS");
        let s = IdentitySettings::from_vars(&Vars::from_pairs([
            ("AUTH_ISSUER", "http://issuer"),
            ("AUTH_AUDIENCE", "rexec"),
            ("AUTH_ALLOWED_CLIENTS", "notebook, cli"),
        ]))
        .unwrap();
        assert_eq!(s.allowed_clients, vec!["notebook", "cli"]);
    }

    #[test]
    fn method_and_timeout_are_validated() {
        let err = IdentitySettings::from_vars(&Vars::from_pairs([
            ("AUTH_API_URL", "http://id/me"),
            ("AUTH_API_METHOD", "PUT"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "AUTH_API_METHOD");
        let err = IdentitySettings::from_vars(&Vars::from_pairs([
            ("AUTH_API_URL", "http://id/me"),
            ("AUTH_TIMEOUT_SECONDS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "AUTH_TIMEOUT_SECONDS");
    }
}
