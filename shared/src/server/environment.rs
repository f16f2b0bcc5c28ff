//! Environments built once and shared by every caller who asks for the same one, as BinderHub
//! and Ray's `runtime_env` do: their identity and their builds' state (the build's objects are
//! in [`super::manifests`]).
//!
//! An environment's key is a digest of everything that changes what is built: the image (so the
//! python and the installer's version), the installer, the package index, the server's source
//! and its own requirements, and the caller's normalised requirements. A build is a Job
//! `env-<key>-<n>` in the environments namespace (`REXEC_ENV_NAMESPACE`): its one container
//! fetches the server's source (its SHA-256 checked) and installs the requirements into the
//! directory `<key>/<n>` of a ReadWriteMany volume (EFS through its CSI driver), which it alone
//! mounts writable. It ends with a marker in that directory: `.complete` (the versions a client
//! must match) or `.failed` (the installer's last lines).
//!
//! Creating the Job is the lock: of concurrent first spawns of one environment, any caller's,
//! one creates build `n` and the others find it, so it is built once. A spawn uses the latest
//! build that runs or completed less than `REXEC_ENV_MAX_AGE` ago (unpinned requirements
//! drift), and starts build `n + 1` otherwise; a server keeps the directory it started with.
//! Servers mount the volume read-only: no user function ever runs with write access to a
//! shared environment.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::batch::v1::Job;
use sha2::{Digest, Sha256};

use super::requirements::Requirements;
use super::settings::{Egress, ServerSettings};
use crate::config::{ConfigError, Vars};

/// The label holding an environment's key (its first 40 characters) on its builds.
pub const ENVIRONMENT: &str = "rexec.ndp.io/environment";
/// The label holding a build's number.
pub const BUILD: &str = "rexec.ndp.io/build";
/// The files of a build's ConfigMap, which its builder reads at /opt/rexec/requirements.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
pub const SERVER_REQUIREMENTS_FILE: &str = "server-requirements.txt";

/// Where environments are built and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentSettings {
    /// The namespace of the builds and of the writable claim (`REXEC_ENV_NAMESPACE`).
    pub namespace: String,
    /// The storage class of the shared volume (`REXEC_ENV_STORAGE_CLASS`).
    pub storage_class: String,
    /// How long a completed build is used (`REXEC_ENV_MAX_AGE`, seconds).
    pub max_age: Duration,
}

impl EnvironmentSettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let max_age = vars.seconds_or("REXEC_ENV_MAX_AGE", Duration::from_secs(7 * 24 * 3600))?;
        if max_age.is_zero() {
            return Err(ConfigError::new("REXEC_ENV_MAX_AGE", "must be more than 0"));
        }
        Ok(Self {
            namespace: vars
                .get("REXEC_ENV_NAMESPACE")
                .unwrap_or("rexec-environments")
                .to_owned(),
            storage_class: vars
                .get("REXEC_ENV_STORAGE_CLASS")
                .unwrap_or("rexec-environments")
                .to_owned(),
            max_age,
        })
    }
}

/// One environment: its key, and what it is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// SHA-256 (hex) of everything that changes what is built.
    pub key: String,
}

impl Environment {
    pub fn of(settings: &ServerSettings, reqs: &Requirements) -> Self {
        let index = match &settings.egress {
            Egress::Proxy { url, .. } => url.as_str(),
            Egress::PublicInternet { .. } => "default",
        };
        let identity = [
            "rexec-environment/1".to_owned(),
            format!("image={}", settings.image_for(&reqs.python)),
            format!("installer={}", settings.installer.name()),
            format!("index={index}"),
            format!("source={}#{}", settings.source, settings.source_sha256),
            format!("server={}", settings.server_requirements.join("\n")),
            format!("requirements={}", reqs.digest),
        ]
        .join("\n");
        Self {
            key: Sha256::digest(identity.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    /// The label value naming the environment: its key's first 40 characters.
    pub fn label(&self) -> &str {
        &self.key[..40]
    }

    /// The Job and ConfigMap of build `n`.
    pub fn build_name(&self, n: u64) -> String {
        format!("env-{}-{n}", self.label())
    }

    /// The directory of build `n` on the shared volume.
    pub fn directory(&self, n: u64) -> String {
        format!("{}/{n}", self.key)
    }
}

/// The latest build of an environment, as its Jobs tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub number: u64,
    /// Running, or completed less than the maximum age ago.
    pub usable: bool,
}

/// The latest of an environment's builds, if any.
pub fn latest(jobs: &[Job], max_age: Duration, now: SystemTime) -> Option<Build> {
    let job = jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .max_by_key(|j| number(j))?;
    let status = job.status.clone().unwrap_or_default();
    let holds = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == kind && c.status == "True")
    };
    let fresh = status
        .completion_time
        .as_ref()
        .and_then(|t| now.duration_since(SystemTime::from(t.0)).ok())
        .is_none_or(|age| age <= max_age);
    Some(Build {
        number: number(job),
        usable: !holds("Failed") && (!holds("Complete") || fresh),
    })
}

fn number(job: &Job) -> u64 {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(BUILD))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::server::requirements::RequirementsPolicy;
    use crate::server::settings::test_settings;

    fn reqs(lines: &[&str]) -> Requirements {
        RequirementsPolicy::from_vars(&Vars::default())
            .unwrap()
            .check(lines)
            .unwrap()
    }

    fn settings(pairs: &[(&str, &str)]) -> ServerSettings {
        test_settings(pairs).unwrap()
    }

    #[test]
    fn the_key_covers_what_changes_the_build_and_nothing_else() {
        let base = Environment::of(&settings(&[]), &reqs(&["python==3.11", "numpy", "six"]));
        assert_eq!(base.key.len(), 64);
        assert_eq!(
            Environment::of(&settings(&[]), &reqs(&["six", "python==3.11", "numpy"])),
            base,
            "the order of the lines is not the environment"
        );
        let changed = [
            Environment::of(&settings(&[]), &reqs(&["python==3.12", "numpy", "six"])),
            Environment::of(&settings(&[]), &reqs(&["python==3.11", "numpy"])),
            Environment::of(
                &settings(&[("REXEC_INSTALLER", "pip")]),
                &reqs(&["python==3.11", "numpy", "six"]),
            ),
            Environment::of(
                &settings(&[("REXEC_SERVER_IMAGE", "python:{python}-slim")]),
                &reqs(&["python==3.11", "numpy", "six"]),
            ),
            Environment::of(
                &settings(&[("REXEC_PACKAGE_INDEX_PROXY", "http://10.0.0.9:3141/simple/")]),
                &reqs(&["python==3.11", "numpy", "six"]),
            ),
            Environment::of(
                &settings(&[("REXEC_SERVER_SOURCE_SHA256", &"a".repeat(64))]),
                &reqs(&["python==3.11", "numpy", "six"]),
            ),
            Environment::of(
                &settings(&[("REXEC_SERVER_REQUIREMENTS", "pyzmq,dill")]),
                &reqs(&["python==3.11", "numpy", "six"]),
            ),
        ];
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(other, &base, "change {i}");
        }
        assert_eq!(base.build_name(3), format!("env-{}-3", &base.key[..40]));
        assert!(base.build_name(3).len() <= 63);
    }

    fn job(n: u64, condition: Option<&str>, completed_ago: u64) -> Job {
        let completed = SystemTime::now() - Duration::from_secs(completed_ago);
        serde_json::from_value(json!({
            "metadata": {"name": format!("env-x-{n}"), "labels": {BUILD: n.to_string()}},
            "status": {
                "conditions": condition.map(|c| vec![json!({"type": c, "status": "True"})]).unwrap_or_default(),
                "completionTime": (condition == Some("Complete")).then(|| humantime::format_rfc3339_seconds(completed).to_string()),
            },
        }))
        .unwrap()
    }

    #[test]
    fn the_latest_build_is_used_while_it_runs_or_is_fresh() {
        let day = Duration::from_secs(86400);
        let now = SystemTime::now();
        assert_eq!(latest(&[], day, now), None);
        let running = [job(1, Some("Complete"), 10), job(2, None, 0)];
        assert_eq!(
            latest(&running, day, now),
            Some(Build {
                number: 2,
                usable: true
            })
        );
        let fresh = [job(1, Some("Complete"), 60)];
        assert_eq!(
            latest(&fresh, day, now),
            Some(Build {
                number: 1,
                usable: true
            })
        );
        let stale = [job(4, Some("Complete"), 2 * 86400)];
        assert_eq!(
            latest(&stale, day, now),
            Some(Build {
                number: 4,
                usable: false
            })
        );
        let failed = [job(1, Some("Complete"), 60), job(2, Some("Failed"), 0)];
        assert_eq!(
            latest(&failed, day, now),
            Some(Build {
                number: 2,
                usable: false
            })
        );
    }
}
