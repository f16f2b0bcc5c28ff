//! Stand-ins for the services rexec-lambda talks to and that no machine here runs, each on
//! 127.0.0.1: the Kubernetes API server ([`kube`]) and the identity service at `AUTH_API_URL`
//! ([`identity_service`]). `make dev`, the bench and the Python tests run them as the
//! `kube-stand-in` and `identity-service` binaries; the Rust tests start them in-process.

pub mod identity_service;
pub mod kube;
