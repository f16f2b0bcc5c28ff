//! A caller's rexec-server: what it is built from, the environment built for it, what it is
//! named, how it is written to the cluster, how it is doing, and where it finds the broker.

pub mod audit;
pub mod broker;
pub mod builds;
pub mod claim;
pub mod environment;
pub mod error;
pub mod manifests;
pub mod marker;
pub mod naming;
pub mod reaper;
pub mod requirements;
pub mod settings;
pub mod spawn_plan;
pub mod spawner;
pub mod status;
