//! The environments' namespace, tidied by the reaper. Each finished build is recorded in its
//! environment's record (the latest build number, the latest completed build, when the latest
//! ended, its image), then its Job (with its pod) and its requirement files are removed; spawns
//! read the record once the Jobs are gone ([`super::environment::plan`]). A Job that Kubernetes
//! removes first (its time to live) costs a rebuild, never a wrong one: a build never writes into
//! a directory used before.
//!
//! Each record then gets its chore ([`super::environment::chore`]): an environment a server uses
//! is marked so; one no server used for `REXEC_ENV_RETENTION` is cleaned by a Job of a fixed
//! shape ([`manifests::cleanup_job`]) that removes its builds' directories up to the latest, and
//! the record says so, so that no spawn uses them again (a new build takes the next number);
//! once the cleanup has ended the record is forgotten, or, if builds came since or it failed,
//! only the mark goes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use serde::Serialize;

use super::environment::{BUILD, Chore, ENVIRONMENT, Record, chore, condition, finished, label};
use super::manifests::{self, CLEANS};
use super::settings::EnvironmentSettings;
use super::spawner::apply;
use crate::cluster::{ClusterError, as_read, list_all};

/// What a run did to the environments' namespace (or found to do, in a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tidied {
    /// Finished builds recorded and removed.
    pub builds: usize,
    /// Environments whose cleanup was started.
    pub cleanups: usize,
    /// Records of cleaned environments forgotten.
    pub forgotten: usize,
}

/// What a run does to the environments' namespace, decided from what it read.
#[derive(Default)]
struct Work<'a> {
    /// Each environment's record, as it will be written.
    records: BTreeMap<&'a str, Record>,
    /// The records' `resourceVersion`s, their removal's precondition.
    versions: HashMap<&'a str, Option<String>>,
    /// The records to write, the cleanups to start, the records to forget, the cleanups' Jobs to
    /// remove, and the finished builds to remove.
    changed: BTreeSet<&'a str>,
    clean: Vec<(&'a str, u64)>,
    forget: Vec<&'a str>,
    ended: Vec<&'a str>,
    done: Vec<&'a Job>,
}

/// One run over the environments' namespace at `now`; `in_use` holds the labels of the
/// environments servers run on.
pub async fn tidy(
    client: &Client,
    settings: &EnvironmentSettings,
    in_use: &HashSet<String>,
    dry_run: bool,
    now: SystemTime,
) -> Result<Tidied, ClusterError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &settings.namespace);
    let files: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let (builds, cleanups, found) = tokio::try_join!(
        list_all(jobs.clone(), ListParams::default().labels(ENVIRONMENT)),
        list_all(jobs.clone(), ListParams::default().labels(CLEANS)),
        list_all(
            files.clone(),
            ListParams::default().labels(&format!("{ENVIRONMENT},!{BUILD}"))
        ),
    )?;
    let work = decide(&builds, &cleanups, &found, in_use, settings, now);
    let tidied = Tidied {
        builds: work.done.len(),
        cleanups: work.clean.len(),
        forgotten: work.forget.len(),
    };
    if !dry_run {
        act(&jobs, &files, settings, &work).await?;
    }
    Ok(tidied)
}

/// What to do, from the builds' and the cleanups' Jobs and the records: finished builds noted in
/// their records, then each record's chore.
fn decide<'a>(
    builds: &'a [Job],
    cleanups: &'a [Job],
    found: &'a [ConfigMap],
    in_use: &HashSet<String>,
    settings: &EnvironmentSettings,
    now: SystemTime,
) -> Work<'a> {
    let mut work = Work::default();
    for cm in found {
        if let Some(env) = label(&cm.metadata, ENVIRONMENT) {
            work.records.insert(env, Record::read(cm));
            work.versions.insert(env, cm.metadata.resource_version.clone());
        }
    }
    let going = |j: &Job| j.metadata.deletion_timestamp.is_some();
    work.done = builds.iter().filter(|j| finished(j) && !going(j)).collect();
    for job in &work.done {
        if let Some(env) = label(&job.metadata, ENVIRONMENT) {
            work.records.entry(env).or_default().note(job, now);
            work.changed.insert(env);
        }
    }
    let building: HashSet<&str> = builds
        .iter()
        .filter(|j| !finished(j))
        .filter_map(|j| label(&j.metadata, ENVIRONMENT))
        .collect();
    let cleanup_ended: HashMap<&str, bool> = cleanups
        .iter()
        .filter(|j| finished(j) && !going(j))
        .filter_map(|j| Some((label(&j.metadata, CLEANS)?, condition(j, "Complete"))))
        .collect();
    for (&env, record) in work.records.iter_mut() {
        let ended = cleanup_ended.get(env).copied();
        match chore(
            record,
            in_use.contains(env),
            building.contains(env),
            ended,
            settings.retention,
            now,
        ) {
            None => continue,
            Some(Chore::MarkUsed) => record.used_at = Some(now),
            Some(Chore::Clean { through }) => {
                record.cleaning = Some(through);
                work.clean.push((env, through));
            }
            Some(Chore::Cleaned) => {
                record.cleaning = None;
                work.ended.push(env);
            }
            Some(Chore::Forget) => {
                work.forget.push(env);
                work.ended.push(env);
                continue;
            }
        }
        work.changed.insert(env);
    }
    work
}

/// Carries the work out: cleanups started, records written or forgotten, finished Jobs removed.
async fn act(
    jobs: &Api<Job>,
    files: &Api<ConfigMap>,
    settings: &EnvironmentSettings,
    work: &Work<'_>,
) -> Result<(), ClusterError> {
    // A cleanup starts before its record says so: a record that says so always has one.
    for &(env, through) in &work.clean {
        let job = manifests::cleanup_job(settings, env, &work.records[env], through);
        match jobs
            .create(&PostParams::default(), &job)
            .await
            .map_err(ClusterError::from)
        {
            Ok(_) | Err(ClusterError::AlreadyExists) => {}
            Err(err) => return Err(err),
        }
        tracing::info!(environment = env, through, "an environment no server used is cleaned");
    }
    for env in work.changed.iter().filter(|env| !work.forget.contains(env)) {
        apply(
            files.clone(),
            manifests::environment_record(settings, env, &work.records[env]),
        )
        .await?;
    }
    for &env in &work.forget {
        let precondition = as_read(work.versions.get(env).cloned().flatten());
        removed(files.delete(&manifests::record_name(env), &precondition).await)?;
    }
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for env in &work.ended {
        removed(jobs.delete(&manifests::cleanup_name(env), &background).await)?;
    }
    for job in &work.done {
        let name = job.metadata.name.clone().unwrap_or_default();
        removed(jobs.delete(&name, &background).await)?;
        removed(files.delete(&name, &DeleteParams::default()).await)?;
        tracing::info!(build = %name, "a finished build recorded and removed");
    }
    Ok(())
}

/// A removal done, or found done already (or changed meanwhile: left for the next run).
fn removed<T>(result: Result<T, kube::Error>) -> Result<(), ClusterError> {
    match result.map_err(ClusterError::from) {
        Ok(_) | Err(ClusterError::NotFound | ClusterError::Conflict(_)) => Ok(()),
        Err(err) => Err(err),
    }
}
