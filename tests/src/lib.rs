//! Test support: stand-ins for the services rexec-lambda talks to, each on 127.0.0.1.

pub mod events;
pub mod identity_service;
pub mod kube_stand_in;
pub mod logs;
pub mod moto;
pub mod oidc;
pub mod stack;
