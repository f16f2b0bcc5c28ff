//! Prints, as JSON, a manifest the functions write that no local stack makes on demand, for the
//! Python tests that judge it (the admission policies, the pod runner):
//!
//! `render-manifest cleanup LABEL KEY THROUGH IMAGE`: the cleanup Job of an environment.

use rexec_shared::config::Vars;
use rexec_shared::server::environment::{EnvironmentSettings, Record};
use rexec_shared::server::manifests;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, label, key, through, image] = args.as_slice() else {
        eprintln!("usage: render-manifest cleanup LABEL KEY THROUGH IMAGE");
        std::process::exit(2);
    };
    assert_eq!(kind, "cleanup", "the one manifest rendered");
    let settings = EnvironmentSettings::from_vars(&Vars::default()).expect("default settings");
    let record = Record {
        key: key.clone(),
        image: Some(image.clone()),
        ..Record::default()
    };
    let through = through.parse().expect("THROUGH is a build number");
    let job = manifests::cleanup_job(&settings, label, &record, through);
    println!("{}", serde_json::to_string(&job).expect("a manifest is JSON"));
}
