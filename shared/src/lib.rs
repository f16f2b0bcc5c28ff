//! The library every rexec-lambda function uses, in four layers, each using only those below it:
//!
//! - [`http`]: the edge. Requests in, JSON answers out, every domain error mapped to its status
//!   in one place, the OpenAPI contract of both APIs and their documentation pages.
//! - [`identity`]: who calls. Token validators, their cache, the group policy, access.
//! - [`server`]: the caller's rexec-server. Requirements, names and owners, the claim,
//!   manifests, settings, status, the broker's address, the spawner.
//! - [`cluster`]: reaching Kubernetes (kubeconfig or EKS) and reading its errors by meaning.
//!
//! [`config`] (settings from the environment), [`https`] (the client of every call out),
//! [`aws`] (signed calls to the AWS API) and [`metrics`] (CloudWatch's embedded metric format)
//! serve all.

pub mod aws;
pub mod cluster;
pub mod config;
pub mod http;
pub mod https;
pub mod identity;
pub mod metrics;
pub mod server;

pub use lambda_http;
