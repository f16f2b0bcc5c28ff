//! The library every rexec-lambda function uses: configuration, errors, request plumbing,
//! identity and group policy, logs and the documentation pages.

pub mod access;
pub mod aws;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod deployment_api;
pub mod docs;
pub mod eks;
pub mod error;
pub mod groups;
pub mod identity;
pub mod logging;
pub mod manifests;
pub mod naming;
pub mod request;
pub mod requirements;
pub mod serve;
pub mod server_status;
pub mod spawner;

pub use lambda_http;
