//! Group-based access control.
//!
//! `GROUP_NAMES` (comma-separated) turns the allow-list on: a caller must belong to one of
//! them. Letting every authenticated user of the realm run code is an explicit choice,
//! `ENABLE_GROUP_BASED_ACCESS=false`: with neither setting a function refuses to start. As in
//! the originals, `ENABLE_GROUP_BASED_ACCESS=true` with an empty list denies everyone, and
//! `ENABLE_GROUP_BASED_ACCESS=false` turns the check off even when `GROUP_NAMES` is set. Groups
//! match exactly (case-sensitive, as Keycloak paths are) on their full path, with or without the
//! leading `/`. `ADMIN_GROUP_NAMES` names the groups whose members are administrators.

use crate::config::{ConfigError, Vars};
use crate::identity::Identity;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupPolicy {
    /// `None`: everyone authenticated is allowed. `Some(empty)`: no one is.
    allowed: Option<Vec<String>>,
    admin: Vec<String>,
}

impl GroupPolicy {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let names = normalised(vars.list("GROUP_NAMES"));
        if names.is_empty() && vars.get("ENABLE_GROUP_BASED_ACCESS").is_none() {
            return Err(ConfigError::new(
                "GROUP_NAMES",
                "name the allowed groups, or set ENABLE_GROUP_BASED_ACCESS=false to let every authenticated user run code",
            ));
        }
        let enabled = vars.bool_or("ENABLE_GROUP_BASED_ACCESS", !names.is_empty())?;
        Ok(Self {
            allowed: enabled.then_some(names),
            admin: normalised(vars.list("ADMIN_GROUP_NAMES")),
        })
    }

    /// Whether the caller may use the API.
    pub fn allows(&self, identity: &Identity) -> bool {
        match &self.allowed {
            None => true,
            Some(allowed) => member_of_any(identity, allowed),
        }
    }

    /// The caller's group that the allow-list admitted, as the identity provider spells it
    /// (`None` when no allow-list is enforced).
    pub fn membership(&self, identity: &Identity) -> Option<String> {
        let allowed = self.allowed.as_ref()?;
        identity
            .groups
            .iter()
            .find(|g| allowed.contains(&normalise(g)))
            .cloned()
    }

    /// Whether the caller belongs to an admin group.
    pub fn is_admin(&self, identity: &Identity) -> bool {
        member_of_any(identity, &self.admin)
    }
}

/// A group path without its leading `/`; nothing else changes (Keycloak paths are
/// case-sensitive, and `/a` and `/A` are different groups).
fn normalise(group: &str) -> String {
    group.trim().strip_prefix('/').unwrap_or(group.trim()).to_owned()
}

fn normalised(groups: Vec<String>) -> Vec<String> {
    groups.iter().map(|g| normalise(g)).filter(|g| !g.is_empty()).collect()
}

fn member_of_any(identity: &Identity, groups: &[String]) -> bool {
    identity
        .groups
        .iter()
        .map(|g| normalise(g))
        .any(|g| groups.contains(&g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(groups: &[&str]) -> Identity {
        Identity {
            sub: "s".into(),
            username: "u".into(),
            roles: vec![],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            client: None,
            expires_at: None,
        }
    }

    #[test]
    fn policy_table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], bool);
        let cases: &[Case] = &[
            (&[("ENABLE_GROUP_BASED_ACCESS", "false")], &[], true),
            (&[("ENABLE_GROUP_BASED_ACCESS", "false")], &["/any"], true),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["/ndp_ep/ep-1"], true),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["ndp_ep/ep-1"], true),
            (&[("GROUP_NAMES", "ndp_ep/ep-1")], &["/ndp_ep/ep-1"], true),
            (&[("GROUP_NAMES", "ndp_ep/ep-1")], &["/NDP_EP/EP-1"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["/ndp_ep/EP-1"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["//ndp_ep/ep-1"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["/ndp_ep/ep-2"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["ep-1"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["/ndp_ep"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &["/ndp_ep/ep-1/sub"], false),
            (&[("GROUP_NAMES", "/ndp_ep/ep-1")], &[], false),
            (&[("GROUP_NAMES", " /a , /b ")], &["/x", "/b"], true),
            (&[("GROUP_NAMES", " /a , /b ")], &["/x", "/B"], false),
            (&[("ENABLE_GROUP_BASED_ACCESS", "true")], &["/a"], false),
            (
                &[("ENABLE_GROUP_BASED_ACCESS", "True"), ("GROUP_NAMES", "/a")],
                &["/a"],
                true,
            ),
            (
                &[("ENABLE_GROUP_BASED_ACCESS", "false"), ("GROUP_NAMES", "/a")],
                &["/b"],
                true,
            ),
            (&[("ENABLE_GROUP_BASED_ACCESS", "0")], &[], true),
        ];
        for (vars, groups, expected) in cases {
            let policy = GroupPolicy::from_vars(&Vars::from_pairs(vars.iter().copied())).unwrap();
            assert_eq!(
                policy.allows(&caller(groups)),
                *expected,
                "vars {vars:?}, groups {groups:?}"
            );
        }
    }

    #[test]
    fn membership_names_the_admitting_group() {
        let policy = GroupPolicy::from_vars(&Vars::from_pairs([("GROUP_NAMES", "ndp_ep/ep-1")])).unwrap();
        assert_eq!(
            policy
                .membership(&caller(&["/other", "/NDP_EP/ep-1", "/ndp_ep/ep-1"]))
                .as_deref(),
            Some("/ndp_ep/ep-1")
        );
        assert_eq!(policy.membership(&caller(&["/other"])), None);
        assert_eq!(GroupPolicy::default().membership(&caller(&["/x"])), None);
    }

    #[test]
    fn admins() {
        let policy = GroupPolicy::from_vars(&Vars::from_pairs([
            ("GROUP_NAMES", "/ndp"),
            ("ADMIN_GROUP_NAMES", "/ndp/admins"),
        ]))
        .unwrap();
        assert!(policy.is_admin(&caller(&["ndp/admins"])));
        assert!(!policy.is_admin(&caller(&["/ndp/Admins"])));
        assert!(!policy.is_admin(&caller(&["/ndp"])));
        assert!(!GroupPolicy::default().is_admin(&caller(&["/ndp/admins"])));
    }

    #[test]
    fn admitting_everyone_is_an_explicit_choice() {
        let err = GroupPolicy::from_vars(&Vars::default()).unwrap_err();
        assert_eq!(err.variable, "GROUP_NAMES");
        let err = GroupPolicy::from_vars(&Vars::from_pairs([("GROUP_NAMES", " , ")])).unwrap_err();
        assert_eq!(err.variable, "GROUP_NAMES");
        let open = GroupPolicy::from_vars(&Vars::from_pairs([("ENABLE_GROUP_BASED_ACCESS", "false")])).unwrap();
        assert!(open.allows(&caller(&[])));
    }

    #[test]
    fn a_bad_switch_names_the_variable() {
        let err = GroupPolicy::from_vars(&Vars::from_pairs([("ENABLE_GROUP_BASED_ACCESS", "sure")])).unwrap_err();
        assert_eq!(err.variable, "ENABLE_GROUP_BASED_ACCESS");
    }
}
