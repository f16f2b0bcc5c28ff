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
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use sha2::{Digest, Sha256};

use super::naming::OWNER;
use super::requirements::Requirements;
use super::settings::{Egress, EnvironmentSettings, ServerSettings};

/// The label holding an environment's key (its first 40 characters) on its builds.
pub const ENVIRONMENT: &str = "rexec.ndp.io/environment";
/// The label holding a build's number.
pub const BUILD: &str = "rexec.ndp.io/build";
/// The files of a build's ConfigMap, which its builder reads at /opt/rexec/requirements.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
pub const SERVER_REQUIREMENTS_FILE: &str = "server-requirements.txt";

/// The ConfigMap of an environment's record: `env-<label>`, in the environments' namespace.
const RECORD_PREFIX: &str = "env-";
/// The record's annotations: the latest build number seen, the latest completed build and when.
pub const LATEST_BUILD: &str = "rexec.ndp.io/latest-build";
pub const COMPLETED_BUILD: &str = "rexec.ndp.io/completed-build";
pub const COMPLETED_AT: &str = "rexec.ndp.io/completed-at";
/// More of the record: when the latest build ended, when a server last used the environment,
/// the builds being cleaned, and the builds' image.
pub const ENDED_AT: &str = "rexec.ndp.io/ended-at";
pub const USED_AT: &str = "rexec.ndp.io/used-at";
pub const CLEANING: &str = "rexec.ndp.io/cleaning";
pub const IMAGE: &str = "rexec.ndp.io/image";
/// How often the reaper renews the mark of an environment in use.
pub const USE_MARK: Duration = Duration::from_secs(3600);
/// How long Kubernetes keeps a finished build's Job (`ttlSecondsAfterFinished`); the reaper
/// records and removes it at its next run, well before.
pub const BUILD_TTL: Duration = Duration::from_secs(3600);
/// How long a caller is asked to wait when every build slot is taken.
pub const BUSY_RETRY: Duration = Duration::from_secs(30);

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

/// The ConfigMap recording the builds of the environment labelled `label`, once their Jobs are
/// gone.
pub fn record_name(label: &str) -> String {
    format!("{RECORD_PREFIX}{label}")
}

/// The value of the label `key` on an object.
pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// A build's number, from its label.
pub fn number(job: &Job) -> Option<u64> {
    label(&job.metadata, BUILD)?.parse().ok()
}

/// How long ago `at` was, if it was.
fn since(at: &Time, now: SystemTime) -> Option<Duration> {
    now.duration_since(SystemTime::from(at.0)).ok()
}

/// What an environment's record says. Written by the reaper as it removes finished builds'
/// Jobs, marks the environments servers use, and cleans those no server used for
/// `REXEC_ENV_RETENTION`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The environment's key: its directory on the shared volume.
    pub key: String,
    /// The latest build number seen.
    pub latest: u64,
    /// The latest build that completed, and when.
    pub completed: Option<(u64, SystemTime)>,
    /// When the latest finished build ended, completed or not.
    pub ended_at: Option<SystemTime>,
    /// When the reaper last saw a server use the environment.
    pub used_at: Option<SystemTime>,
    /// The builds up to this number are being removed: none of them is used again.
    pub cleaning: Option<u64>,
    /// The image the builds ran, which their cleanup runs too.
    pub image: Option<String>,
}

impl Record {
    /// Takes in a finished build (at `now`): its number, its completion if later than the one
    /// recorded, when it ended, its image and its environment's key.
    pub fn note(&mut self, job: &Job, now: SystemTime) {
        let Some(n) = number(job) else { return };
        self.latest = self.latest.max(n);
        let completed = job.status.as_ref().and_then(|s| s.completion_time.as_ref());
        if let Some(at) = completed
            && self.completed.is_none_or(|(m, _)| m < n)
        {
            self.completed = Some((n, SystemTime::from(at.0)));
        }
        self.ended_at = self
            .ended_at
            .max(Some(completed.map_or(now, |at| SystemTime::from(at.0))));
        let spec = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        if let Some(image) = spec.and_then(|s| s.containers.first()?.image.clone()) {
            self.image = Some(image);
        }
        if let Some(key) = job.metadata.annotations.as_ref().and_then(|a| a.get(ENVIRONMENT)) {
            self.key = key.clone();
        }
    }

    pub fn read(cm: &ConfigMap) -> Self {
        let annotation = |name: &str| cm.metadata.annotations.as_ref()?.get(name).cloned();
        let time = |name: &str| annotation(name).and_then(|t| humantime::parse_rfc3339(&t).ok());
        let number = |name: &str| annotation(name).and_then(|n| n.parse().ok());
        Self {
            key: annotation(ENVIRONMENT).unwrap_or_default(),
            latest: number(LATEST_BUILD).unwrap_or(0),
            completed: number(COMPLETED_BUILD).zip(time(COMPLETED_AT)),
            ended_at: time(ENDED_AT),
            used_at: time(USED_AT),
            cleaning: number(CLEANING),
            image: annotation(IMAGE),
        }
    }
}

/// What the reaper does about one environment's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chore {
    /// A server uses it: the record says since when, renewed every [`USE_MARK`].
    MarkUsed,
    /// No server used it for `REXEC_ENV_RETENTION`: its builds up to `through` are removed.
    Clean { through: u64 },
    /// The cleanup failed, or builds came after it: the mark goes (a failed one is tried again).
    Cleaned,
    /// Cleaned, and nothing built since: the record goes, and numbering starts again.
    Forget,
}

/// What to do about the record of an environment that servers use (`in_use`) or not, that is
/// being built (`building`) or not, whose cleanup ended (`Some(succeeded)`) or not, at `now`.
pub fn chore(
    record: &Record,
    in_use: bool,
    building: bool,
    cleanup: Option<bool>,
    retention: Duration,
    now: SystemTime,
) -> Option<Chore> {
    let age = |t: Option<SystemTime>| t.and_then(|t| now.duration_since(t).ok());
    if let (Some(through), Some(succeeded)) = (record.cleaning, cleanup) {
        let nothing_since = succeeded && record.latest == through && !in_use && !building;
        return Some(if nothing_since { Chore::Forget } else { Chore::Cleaned });
    }
    if in_use {
        return age(record.used_at)
            .is_none_or(|a| a > USE_MARK)
            .then_some(Chore::MarkUsed);
    }
    if building || record.cleaning.is_some() || record.image.is_none() {
        return None;
    }
    let idle = age(record.used_at.max(record.ended_at))?;
    (idle > retention).then_some(Chore::Clean { through: record.latest })
}

/// What a spawn does about the environment its new server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Build `n` runs, or completed recently enough: the server uses it.
    Use(u64),
    /// No build is usable: build `n` is started for this caller.
    Start(u64),
}

/// Why no build can be started for a caller now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The caller started a build of another environment that has not ended: they wait.
    InProgress { retry_after: Duration },
    /// As many builds run as `REXEC_MAX_BUILDS` allows.
    Busy { retry_after: Duration },
}

/// Whether a Job has ended (completed or failed) or is going.
pub fn finished(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_some() || condition(job, "Complete") || condition(job, "Failed")
}

/// Whether a Job's condition `kind` (`Complete`, `Failed`) holds.
pub fn condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// What a spawn of `starter` (an owner's slug), forced (`force_reinstall`) or not, does about
/// `env`, from every build's Job in the environments' namespace and the environment's record, at
/// `now`. Decided without the
/// cluster; [`super::spawner`] carries it out.
pub fn plan(
    env: &Environment,
    jobs: &[Job],
    record: Option<Record>,
    starter: &str,
    force: bool,
    settings: &EnvironmentSettings,
    now: SystemTime,
) -> Result<Plan, Refusal> {
    let own = jobs
        .iter()
        .filter(|j| label(&j.metadata, ENVIRONMENT) == Some(env.label()));
    let record = record.unwrap_or_default();
    let from_jobs = latest(own, settings.max_age, now);
    let newest = from_jobs.map_or(0, |b| b.number).max(record.latest);
    // A forced spawn builds anew, unless a build is running (it is new).
    let usable = match from_jobs.filter(|b| b.number == newest) {
        Some(build) => build.usable && (build.running || !force),
        // The latest build's Job is gone: the record says whether it completed.
        None => {
            !force
                && record.completed.is_some_and(|(n, at)| {
                    n == newest
                        && record.cleaning.is_none_or(|through| n > through)
                        && now.duration_since(at).unwrap_or_default() <= settings.max_age
                })
        }
    };
    if usable {
        return Ok(Plan::Use(newest));
    }
    let unfinished: Vec<&Job> = jobs.iter().filter(|j| !finished(j)).collect();
    if let Some(mine) = unfinished.iter().find(|j| label(&j.metadata, OWNER) == Some(starter)) {
        let age = mine
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| since(t, now))
            .unwrap_or_default();
        let left = settings.build_timeout.saturating_sub(age);
        return Err(Refusal::InProgress {
            retry_after: left.clamp(Duration::from_secs(5), Duration::from_secs(60)),
        });
    }
    if unfinished.len() >= settings.max_builds as usize {
        return Err(Refusal::Busy {
            retry_after: BUSY_RETRY,
        });
    }
    Ok(Plan::Start(newest + 1))
}

/// The latest build of an environment, as its Jobs tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build {
    pub number: u64,
    /// Running, or completed less than the maximum age ago.
    pub usable: bool,
    /// Not ended yet.
    pub running: bool,
}

/// The latest of an environment's builds, if any.
fn latest<'a>(jobs: impl Iterator<Item = &'a Job>, max_age: Duration, now: SystemTime) -> Option<Build> {
    let job = jobs
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .max_by_key(|j| number(j))?;
    let fresh = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .and_then(|t| since(t, now))
        .is_none_or(|age| age <= max_age);
    Some(Build {
        number: number(job).unwrap_or(0),
        running: !finished(job),
        usable: !condition(job, "Failed") && (!condition(job, "Complete") || fresh),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Vars;
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

    fn build(env: &Environment, n: u64, starter: &str, condition: Option<&str>) -> Job {
        let mut job = job(n, condition, 60);
        let labels = job.metadata.labels.get_or_insert_default();
        labels.insert(ENVIRONMENT.into(), env.label().into());
        labels.insert(OWNER.into(), starter.into());
        let created = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(120));
        job.metadata.creation_timestamp = serde_json::from_value(json!(created.to_string())).unwrap();
        job
    }

    /// The spawn's plan for its environment, as a table: what runs, what the record says, who
    /// asks, and what follows.
    #[test]
    fn a_spawn_plans_its_environment_from_the_builds_and_the_record() {
        let settings = EnvironmentSettings {
            max_builds: 2,
            ..EnvironmentSettings::from_vars(&Vars::default()).unwrap()
        };
        let now = SystemTime::now();
        let week = 7 * 86400;
        let (env, other, third) = (
            Environment { key: "a".repeat(64) },
            Environment { key: "b".repeat(64) },
            Environment { key: "c".repeat(64) },
        );
        let record = |latest: u64, completed: Option<(u64, u64)>| {
            Some(Record {
                latest,
                completed: completed.map(|(n, ago)| (n, now - Duration::from_secs(ago))),
                ..Record::default()
            })
        };
        let progress = Err(Refusal::InProgress {
            retry_after: Duration::from_secs(60),
        });
        let busy = Err(Refusal::Busy {
            retry_after: BUSY_RETRY,
        });
        type Case = (&'static str, Vec<Job>, Option<Record>, Result<Plan, Refusal>);
        let cases: Vec<Case> = vec![
            ("nothing built", vec![], None, Ok(Plan::Start(1))),
            (
                "someone's build runs",
                vec![build(&env, 1, "bob", None)],
                None,
                Ok(Plan::Use(1)),
            ),
            (
                "completed",
                vec![build(&env, 1, "bob", Some("Complete"))],
                None,
                Ok(Plan::Use(1)),
            ),
            (
                "failed",
                vec![build(&env, 1, "bob", Some("Failed"))],
                None,
                Ok(Plan::Start(2)),
            ),
            ("recorded, Job gone", vec![], record(3, Some((3, 60))), Ok(Plan::Use(3))),
            (
                "recorded, too old",
                vec![],
                record(3, Some((3, week + 1))),
                Ok(Plan::Start(4)),
            ),
            (
                "latest never completed",
                vec![],
                record(4, Some((3, 60))),
                Ok(Plan::Start(5)),
            ),
            (
                "the record is behind a Job",
                vec![build(&env, 5, "bob", None)],
                record(4, Some((4, 60))),
                Ok(Plan::Use(5)),
            ),
            (
                "the caller builds another",
                vec![build(&other, 1, "alice", None)],
                None,
                progress,
            ),
            (
                "the caller builds this one",
                vec![build(&env, 2, "alice", None)],
                None,
                Ok(Plan::Use(2)),
            ),
            (
                "the caller's other build ended",
                vec![build(&other, 1, "alice", Some("Failed"))],
                None,
                Ok(Plan::Start(1)),
            ),
            (
                "every slot taken",
                vec![build(&other, 1, "bob", None), build(&third, 1, "carol", None)],
                None,
                busy,
            ),
            (
                "a slot freed",
                vec![
                    build(&other, 1, "bob", None),
                    build(&third, 1, "carol", Some("Complete")),
                ],
                None,
                Ok(Plan::Start(1)),
            ),
            (
                "a full house does not stop a usable build",
                vec![build(&other, 1, "bob", None), build(&env, 1, "carol", None)],
                None,
                Ok(Plan::Use(1)),
            ),
        ];
        for (case, jobs, record, expected) in cases {
            assert_eq!(
                plan(&env, &jobs, record, "alice", false, &settings, now),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn a_build_being_cleaned_is_not_used() {
        let settings = EnvironmentSettings::from_vars(&Vars::default()).unwrap();
        let now = SystemTime::now();
        let env = Environment { key: "a".repeat(64) };
        let record = Record {
            latest: 3,
            completed: Some((3, now)),
            cleaning: Some(3),
            ..Record::default()
        };
        assert_eq!(
            plan(&env, &[], Some(record), "alice", false, &settings, now),
            Ok(Plan::Start(4))
        );
    }

    #[test]
    fn a_forced_spawn_builds_anew_unless_a_build_runs() {
        let settings = EnvironmentSettings::from_vars(&Vars::default()).unwrap();
        let now = SystemTime::now();
        let env = Environment { key: "a".repeat(64) };
        let recorded = Record {
            latest: 3,
            completed: Some((3, now)),
            ..Record::default()
        };
        let forced = |jobs: &[Job], record: Option<Record>| plan(&env, jobs, record, "alice", true, &settings, now);
        assert_eq!(forced(&[], Some(recorded.clone())), Ok(Plan::Start(4)));
        assert_eq!(
            forced(&[build(&env, 1, "bob", Some("Complete"))], None),
            Ok(Plan::Start(2))
        );
        assert_eq!(
            forced(&[build(&env, 1, "bob", None)], None),
            Ok(Plan::Use(1)),
            "a running build is new"
        );
        assert_eq!(
            plan(&env, &[], Some(recorded), "alice", false, &settings, now),
            Ok(Plan::Use(3)),
            "unforced, the completed build is used"
        );
    }

    /// The reaper's chore for a record, as a table: in use, building, the cleanup's end, ages.
    #[test]
    fn the_reaper_marks_cleans_and_forgets_environments() {
        let now = SystemTime::now();
        let (day, week) = (Duration::from_secs(86400), Duration::from_secs(7 * 86400));
        let ago = |d: Duration| Some(now - d);
        let built = Record {
            key: "a".repeat(64),
            latest: 2,
            completed: Some((2, now - 8 * day)),
            ended_at: ago(8 * day),
            image: Some("python:3.11-slim".into()),
            ..Record::default()
        };
        let with = |change: &dyn Fn(&mut Record)| {
            let mut r = built.clone();
            change(&mut r);
            r
        };
        type Case = (&'static str, Record, bool, bool, Option<bool>, Option<Chore>);
        let cases: Vec<Case> = vec![
            (
                "unused past the retention",
                built.clone(),
                false,
                false,
                None,
                Some(Chore::Clean { through: 2 }),
            ),
            (
                "in use, never marked",
                built.clone(),
                true,
                false,
                None,
                Some(Chore::MarkUsed),
            ),
            (
                "in use, marked lately",
                with(&|r| r.used_at = ago(Duration::from_secs(60))),
                true,
                false,
                None,
                None,
            ),
            (
                "in use, marked long ago",
                with(&|r| r.used_at = ago(2 * USE_MARK)),
                true,
                false,
                None,
                Some(Chore::MarkUsed),
            ),
            (
                "used within the retention",
                with(&|r| r.used_at = ago(day)),
                false,
                false,
                None,
                None,
            ),
            (
                "ended within the retention",
                with(&|r| r.ended_at = ago(day)),
                false,
                false,
                None,
                None,
            ),
            ("being built", built.clone(), false, true, None, None),
            (
                "no image to clean with",
                with(&|r| r.image = None),
                false,
                false,
                None,
                None,
            ),
            ("never ended", with(&|r| r.ended_at = None), false, false, None, None),
            ("cleaning", with(&|r| r.cleaning = Some(2)), false, false, None, None),
            (
                "cleaned, nothing since",
                with(&|r| r.cleaning = Some(2)),
                false,
                false,
                Some(true),
                Some(Chore::Forget),
            ),
            (
                "cleaned, built since",
                with(&|r| {
                    r.cleaning = Some(2);
                    r.latest = 3
                }),
                false,
                false,
                Some(true),
                Some(Chore::Cleaned),
            ),
            (
                "cleaned, in use since",
                with(&|r| r.cleaning = Some(2)),
                true,
                false,
                Some(true),
                Some(Chore::Cleaned),
            ),
            (
                "the cleanup failed",
                with(&|r| r.cleaning = Some(2)),
                false,
                false,
                Some(false),
                Some(Chore::Cleaned),
            ),
        ];
        for (case, record, in_use, building, cleanup, expected) in cases {
            assert_eq!(chore(&record, in_use, building, cleanup, week, now), expected, "{case}");
        }
    }

    #[test]
    fn the_latest_build_is_used_while_it_runs_or_is_fresh() {
        let day = Duration::from_secs(86400);
        let now = SystemTime::now();
        assert_eq!(latest([].iter(), day, now), None);
        let running = [job(1, Some("Complete"), 10), job(2, None, 0)];
        assert_eq!(
            latest(running.iter(), day, now),
            Some(Build {
                number: 2,
                usable: true,
                running: true
            })
        );
        let fresh = [job(1, Some("Complete"), 60)];
        assert_eq!(
            latest(fresh.iter(), day, now),
            Some(Build {
                number: 1,
                usable: true,
                running: false
            })
        );
        let stale = [job(4, Some("Complete"), 2 * 86400)];
        assert_eq!(
            latest(stale.iter(), day, now),
            Some(Build {
                number: 4,
                usable: false,
                running: false
            })
        );
        let failed = [job(1, Some("Complete"), 60), job(2, Some("Failed"), 0)];
        assert_eq!(
            latest(failed.iter(), day, now),
            Some(Build {
                number: 2,
                usable: false,
                running: false
            })
        );
    }
}
