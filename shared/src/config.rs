//! Settings read from environment variables, validated once when a function starts.
//!
//! Every reader takes the variable's name, so an error always says which variable is wrong.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

/// A setting that is missing or cannot be used. Its message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(variable: &str, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A snapshot of environment variables. Blank values count as unset.
#[derive(Debug, Clone, Default)]
pub struct Vars(HashMap<String, String>);

impl Vars {
    /// The process environment.
    pub fn from_env() -> Self {
        Self(std::env::vars().collect())
    }

    /// Explicit variables, for tests and tools.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }

    /// These variables with `name` set to `value`.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The trimmed value, or `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// `true/false`, `1/0`, `yes/no`, `on/off`, in any case.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => {
                parse_bool(raw).ok_or_else(|| ConfigError::new(name, format!("expected true or false, got {raw:?}")))
            }
        }
    }

    /// A whole or fractional number of seconds, at least zero.
    pub fn seconds_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| ConfigError::new(name, format!("expected a number of seconds, got {raw:?}"))),
        }
    }

    /// An absolute `http` or `https` URL.
    pub fn url(&self, name: &str) -> Result<Option<Url>, ConfigError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        let url = Url::parse(raw).map_err(|e| ConfigError::new(name, format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConfigError::new(name, "must be an http or https URL with a host"));
        }
        Ok(Some(url))
    }

    /// A comma-separated list; empty items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses the boolean spellings accepted in settings and form fields.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_values_count_as_unset() {
        let vars = Vars::from_pairs([("A", "  "), ("B", " x ")]);
        assert_eq!(vars.get("A"), None);
        assert_eq!(vars.get("B"), Some("x"));
        assert_eq!(vars.required("A").unwrap_err().variable, "A");
    }

    #[test]
    fn errors_name_the_variable() {
        let vars = Vars::from_pairs([("T", "soon"), ("U", "ftp://x"), ("F", "maybe")]);
        let err = vars.seconds_or("T", Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("T:"), "{err}");
        assert_eq!(vars.url("U").unwrap_err().variable, "U");
        assert_eq!(vars.bool_or("F", false).unwrap_err().variable, "F");
        assert!(vars.seconds_or("N", Duration::from_secs(3)).is_ok());
    }

    #[test]
    fn fractional_seconds_and_lists() {
        let vars = Vars::from_pairs([("T", "0.25"), ("L", " a, ,b ,")]);
        assert_eq!(
            vars.seconds_or("T", Duration::ZERO).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(vars.list("L"), vec!["a", "b"]);
        assert_eq!(
            Vars::from_pairs([("T", "-1")])
                .seconds_or("T", Duration::ZERO)
                .unwrap_err()
                .variable,
            "T"
        );
    }
}
