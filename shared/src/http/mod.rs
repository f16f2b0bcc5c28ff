//! The HTTP edge: reading requests, answering JSON, mapping domain errors to statuses, the
//! Lambda entry point, logs, and the documentation of both APIs.

pub mod api;
pub mod caller_limit;
pub mod deployment_api;
pub mod docs;
pub mod error;
pub mod logging;
pub mod request;
pub mod serve;
pub mod servers_deps;
