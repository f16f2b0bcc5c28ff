//! Kubernetes names for a caller's objects.
//!
//! Every caller gets one namespace, `<REXEC_NAMESPACE_PREFIX><slug(sub)>`. The slug keeps a
//! `sub` that is already a safe DNS-1123 label as it is (Keycloak subjects are UUIDs); any other
//! `sub` is lowercased, stripped to `[a-z0-9-]` and suffixed with a hash of the raw value, so
//! two different subjects never share a namespace (`Alice` and `alice` included).

use sha2::{Digest, Sha256};

use crate::config::{ConfigError, Vars};

/// The longest DNS-1123 label (namespace names, label values).
pub const MAX_LABEL: usize = 63;
const HASH_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
}

impl Naming {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let prefix = vars.get("REXEC_NAMESPACE_PREFIX").unwrap_or("rexec-").to_owned();
        let valid = prefix.len() <= 30
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && prefix.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        if !valid {
            return Err(ConfigError::new(
                "REXEC_NAMESPACE_PREFIX",
                "must start with a lowercase letter, hold only a-z, 0-9 and -, and be at most 30 characters",
            ));
        }
        Ok(Self { prefix })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The caller's namespace.
    pub fn namespace(&self, sub: &str) -> String {
        format!("{}{}", self.prefix, slug(sub, MAX_LABEL - self.prefix.len()))
    }
}

/// A DNS-1123 label of at most `max` characters naming `raw`, unique per `raw`.
pub fn slug(raw: &str, max: usize) -> String {
    if is_label(raw) && raw.len() <= max {
        return raw.to_owned();
    }
    let hash: String = Sha256::digest(raw.as_bytes())
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut safe = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            safe.push(c);
        } else if !safe.ends_with('-') {
            safe.push('-');
        }
    }
    let room = max - HASH_LEN - 1;
    let safe: String = safe.trim_matches('-').chars().take(room).collect();
    let safe = safe.trim_end_matches('-');
    if safe.is_empty() {
        format!("u-{hash}")
    } else {
        format!("{safe}-{hash}")
    }
}

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and `-`, alphanumeric at both ends.
pub fn is_label(s: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.bytes().all(|b| ok(b) || b == b'-')
        && ok(s.as_bytes()[0])
        && ok(s.as_bytes()[s.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming::from_vars(&Vars::default()).unwrap()
    }

    #[test]
    fn safe_subjects_are_kept() {
        let uuid = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
        assert_eq!(naming().namespace(uuid), format!("rexec-{uuid}"));
    }

    #[test]
    fn other_subjects_get_a_hash_and_stay_distinct() {
        let subjects = [
            "Alice",
            "alice@example.org",
            "alice",
            "ALICE",
            "a_l_i_c_e",
            "ünïcödé",
            "-",
            "",
            "../../etc",
            &"x".repeat(200),
        ];
        let names: Vec<String> = subjects.iter().map(|s| naming().namespace(s)).collect();
        for (sub, name) in subjects.iter().zip(&names) {
            assert!(is_label(name), "{sub:?} -> {name:?}");
            assert!(name.starts_with("rexec-"));
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(
            naming().namespace("Alice"),
            naming().namespace("Alice"),
            "deterministic"
        );
    }

    #[test]
    fn the_prefix_is_validated() {
        for bad in ["Rexec-", "9x-", "rexec_", &"r".repeat(31)] {
            let err = Naming::from_vars(&Vars::from_pairs([("REXEC_NAMESPACE_PREFIX", bad)])).unwrap_err();
            assert_eq!(err.variable, "REXEC_NAMESPACE_PREFIX");
        }
        let n = Naming::from_vars(&Vars::from_pairs([("REXEC_NAMESPACE_PREFIX", "ndp-rexec-")])).unwrap();
        assert_eq!(n.namespace("bob"), "ndp-rexec-bob");
    }
}
