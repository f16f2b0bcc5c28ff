//! Kubernetes names for a caller's objects.
//!
//! Every caller gets one namespace, `<REXEC_NAMESPACE_PREFIX><slug(sub)>`, and no two subjects
//! can share one, by construction. The slug keeps a `sub` that is already a plain DNS-1123
//! label without `--` as it is (Keycloak subjects are UUIDs). Any other `sub` becomes a readable
//! part and an 80-bit hash of the raw value joined by `--`: `Alice` gives `alice--<hash>`. A kept
//! slug never holds `--` and a hashed one always does, so a kept slug cannot equal a hashed one,
//! and two hashed slugs are equal only if 80-bit hashes collide.
//!
//! An [`Owner`] is one caller's names: the namespace, its slug (the owner label) and the `sub`
//! recorded on the namespace. Every access checks that record ([`Owner::check`]).

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::ServerError;
use crate::config::{ConfigError, Vars};

/// The label naming the service that manages an object, and our value of it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "rexec-lambda";
/// The label naming the caller an object belongs to: the owner's slug.
pub const OWNER: &str = "rexec.ndp.io/owner";
/// The annotation recording the caller's `sub` on the namespace and its objects.
pub const SUB: &str = "rexec.ndp.io/sub";

/// The longest DNS-1123 label (namespace names, label values).
pub const MAX_LABEL: usize = 63;
/// The hash of a hashed slug: 16 base32 characters, 80 bits.
const HASH_LEN: usize = 16;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

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
        self.namespace_of(&self.slug(sub))
    }

    /// The namespace whose slug is `slug`.
    fn namespace_of(&self, slug: &str) -> String {
        format!("{}{slug}", self.prefix)
    }

    /// The caller's slug: the namespace without its prefix, and the owner label's value.
    pub fn slug(&self, sub: &str) -> String {
        slug(sub, MAX_LABEL - self.prefix.len())
    }
}

/// A DNS-1123 label of at most `max` (at least 19) characters naming `raw`, unique per `raw`.
pub fn slug(raw: &str, max: usize) -> String {
    if is_label(raw) && raw.len() <= max && !raw.contains("--") {
        return raw.to_owned();
    }
    let digest = Sha256::digest(raw.as_bytes());
    let bits = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
    let hash: String = (0..HASH_LEN)
        .map(|i| BASE32[((bits >> (123 - 5 * i)) & 31) as usize] as char)
        .collect();
    let mut readable = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            readable.push(c);
        } else if !readable.ends_with('-') {
            readable.push('-');
        }
    }
    let room = max - HASH_LEN - 2;
    let readable: String = readable.trim_matches('-').chars().take(room).collect();
    let readable = readable.trim_end_matches('-');
    format!("{}--{hash}", if readable.is_empty() { "u" } else { readable })
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

/// The names of one caller's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub sub: String,
    pub namespace: String,
    /// The namespace without its prefix: a label value naming the caller.
    pub slug: String,
}

impl Owner {
    /// The names of the caller whose token's `sub` is `sub`.
    pub fn new(naming: &Naming, sub: &str) -> Self {
        let slug = naming.slug(sub);
        Self {
            sub: sub.to_owned(),
            namespace: naming.namespace_of(&slug),
            slug,
        }
    }

    /// The labels of every object of the caller's.
    pub fn labels(&self) -> serde_json::Value {
        json!({MANAGED_BY: MANAGER, OWNER: self.slug})
    }

    /// Refuses a namespace of the caller's name that this service does not manage, or that
    /// records another owner.
    pub fn check(&self, namespace: &Namespace) -> Result<(), ServerError> {
        let ours = namespace.labels().get(MANAGED_BY).is_some_and(|m| m == MANAGER);
        let recorded = namespace.annotations().get(SUB);
        if ours && recorded == Some(&self.sub) {
            return Ok(());
        }
        tracing::error!(
            namespace = %self.namespace,
            managed = ours,
            owner_recorded = recorded.is_some(),
            "the caller's namespace exists but is not managed by rexec-lambda for this caller"
        );
        Err(ServerError::NamespaceTaken)
    }
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
    fn a_kept_slug_never_looks_like_a_hashed_one() {
        let hashed = naming().slug("Alice");
        assert!(
            hashed.starts_with("alice--") && hashed.len() == "alice--".len() + HASH_LEN,
            "{hashed}"
        );
        assert_ne!(
            naming().slug(&hashed),
            hashed,
            "a sub spelled like a hashed slug is hashed too"
        );
        assert!(naming().slug("a--b").contains("--") && naming().slug("a--b") != "a--b");
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

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn prefix() -> impl Strategy<Value = Naming> {
            "[a-z][a-z0-9-]{0,29}"
                .prop_map(|p| Naming::from_vars(&Vars::from_pairs([("REXEC_NAMESPACE_PREFIX", p.as_str())])).unwrap())
        }

        /// Subjects as they come: UUIDs, labels, labels with `--`, hashed-looking ones, any text.
        fn sub() -> impl Strategy<Value = String> {
            prop_oneof![
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "[a-z0-9][a-z0-9-]{0,70}",
                "[a-z0-9]{1,20}--[a-z2-7]{16}",
                "[A-Za-z0-9_.@-]{0,80}",
                any::<String>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn every_namespace_is_a_label(naming in prefix(), s in sub()) {
                let ns = naming.namespace(&s);
                prop_assert!(is_label(&ns), "{s:?} -> {ns:?}");
                prop_assert!(ns.starts_with(naming.prefix()));
                prop_assert_eq!(&ns[naming.prefix().len()..], naming.slug(&s));
            }

            #[test]
            fn different_subjects_never_share_a_namespace(naming in prefix(), a in sub(), b in sub()) {
                prop_assume!(a != b);
                prop_assert_ne!(naming.namespace(&a), naming.namespace(&b));
            }

            #[test]
            fn a_subject_never_takes_the_hashed_slug_of_another(naming in prefix(), a in sub()) {
                let hashed = naming.slug(&a);
                if hashed != a {
                    prop_assert_ne!(naming.slug(&hashed), hashed.clone(), "the sub {:?} would take {:?}'s namespace", hashed, a);
                }
            }
        }
    }
}
