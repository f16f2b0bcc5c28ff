//! Finished environment builds, tidied by the reaper: each is recorded in its environment's
//! record (the latest build number, and the latest completed build with when), then its Job
//! (with its pod) and its requirement files are removed. Spawns read the record once the Jobs
//! are gone ([`super::environment::plan`]). A Job that Kubernetes removes first (its time to
//! live) costs a rebuild, never a wrong one: a build never writes into a directory used before.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};

use super::environment::{BUILD, ENVIRONMENT, EnvironmentSettings, Record, finished, label};
use super::manifests;
use super::reaper::list_all;
use super::spawner::apply;
use crate::cluster::ClusterError;

/// Records and removes every finished build; how many (found, in a dry run).
pub async fn tidy(client: &Client, settings: &EnvironmentSettings, dry_run: bool) -> Result<usize, ClusterError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &settings.namespace);
    let files: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let (all, records) = tokio::try_join!(
        list_all(jobs.clone(), ListParams::default().labels(ENVIRONMENT)),
        list_all(
            files.clone(),
            ListParams::default().labels(&format!("{ENVIRONMENT},!{BUILD}"))
        ),
    )?;
    let mut records: HashMap<String, Record> = records
        .iter()
        .filter_map(|cm| Some((label(&cm.metadata, ENVIRONMENT)?.to_owned(), Record::read(cm))))
        .collect();
    let done: Vec<&Job> = all
        .iter()
        .filter(|j| finished(j) && j.metadata.deletion_timestamp.is_none())
        .collect();
    if dry_run {
        return Ok(done.len());
    }
    // Each environment's record first, from all its finished builds at once, with its key.
    let mut keys = BTreeMap::new();
    for job in &done {
        let Some(env) = label(&job.metadata, ENVIRONMENT) else {
            continue;
        };
        records.entry(env.to_owned()).or_default().note(job);
        let key = job.metadata.annotations.as_ref().and_then(|a| a.get(ENVIRONMENT));
        keys.insert(env, key.map_or("", String::as_str));
    }
    for (env, key) in keys {
        apply(
            files.clone(),
            manifests::environment_record(settings, env, key, records[env]),
        )
        .await?;
    }
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for job in &done {
        let name = job.metadata.name.clone().unwrap_or_default();
        for removed in [
            jobs.delete(&name, &background).await.map(|_| ()),
            files.delete(&name, &DeleteParams::default()).await.map(|_| ()),
        ] {
            match removed.map_err(ClusterError::from) {
                Ok(()) | Err(ClusterError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        tracing::info!(build = %name, "a finished build recorded and removed");
    }
    Ok(done.len())
}
