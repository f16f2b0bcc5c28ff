//! Prints, as JSON, manifests the functions write, for the Python tests that judge them against a
//! real API server or a pod runner, without a local stack to make them:
//!
//! - `render-manifest cleanup LABEL KEY THROUGH IMAGE`: the cleanup Job of an environment;
//! - `render-manifest spawn SUB`: what a first spawn of `SUB` with `python==3.11` writes, by
//!   kind (namespace, quota, limits, network policy, claim of the environments' volume, the
//!   server's claim, pod, and the environment's build files, Job and quota), with the
//!   settings' defaults.

use std::time::SystemTime;

use rexec_shared::config::Vars;
use rexec_shared::server::environment::{Environment, Record};
use rexec_shared::server::naming::{Naming, Owner};
use rexec_shared::server::requirements::RequirementsPolicy;
use rexec_shared::server::settings::EnvironmentSettings;
use rexec_shared::server::settings::ServerSettings;
use rexec_shared::server::{claim, manifests};
use rexec_tests::stack::{UNFETCHED_SOURCE_SHA256, UNPULLED_IMAGE_DIGESTS};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rendered = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["cleanup", label, key, through, image] => cleanup(label, key, through, image),
        ["spawn", sub] => spawn(sub),
        _ => {
            eprintln!("usage: render-manifest cleanup LABEL KEY THROUGH IMAGE | spawn SUB");
            std::process::exit(2);
        }
    };
    println!("{rendered}");
}

fn cleanup(label: &str, key: &str, through: &str, image: &str) -> Value {
    let settings = EnvironmentSettings::from_vars(&Vars::default()).expect("default settings");
    let record = Record {
        key: key.to_owned(),
        image: Some(image.to_owned()),
        ..Record::default()
    };
    let through = through.parse().expect("THROUGH is a build number");
    json!(manifests::cleanup_job(&settings, label, &record, through))
}

fn spawn(sub: &str) -> Value {
    let vars = Vars::from_pairs([
        ("REXEC_SERVER_SOURCE_SHA256", UNFETCHED_SOURCE_SHA256),
        ("REXEC_SERVER_IMAGE_DIGESTS", UNPULLED_IMAGE_DIGESTS),
    ]);
    let settings = ServerSettings::from_vars(&vars).expect("default settings");
    let owner = Owner::new(&Naming::from_vars(&vars).expect("default naming"), sub);
    let reqs = RequirementsPolicy::from_vars(&vars)
        .expect("default policy")
        .check(&["python==3.11"])
        .expect("a valid line");
    let env = Environment::of(&settings, &reqs);
    json!({
        "namespace": manifests::namespace(&owner, SystemTime::now()),
        "quota": manifests::resource_quota(&owner, &settings),
        "limits": manifests::limit_range(&owner, &settings),
        "network_policy": manifests::network_policy(&owner, &settings),
        "environment_claim": manifests::environment_claim(&owner, &settings),
        "claim": claim::build(&owner, sub, &reqs, 1),
        "pod": manifests::pod(&owner, &settings, &reqs, 1, 1),
        "build_files": manifests::build_files(&env, &settings, &reqs, 1),
        "build_job": manifests::build_job(&env, &settings, &owner, &reqs, 1),
        "build_quota": manifests::build_quota(&settings),
    })
}
