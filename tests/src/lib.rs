//! Test support: the stack of stand-ins a test starts, Lambda events, captured logs, and the
//! real services some tests run (moto, an OpenID provider, Keycloak, the real Kubernetes control
//! plane).

pub mod control_plane;
pub mod events;
pub mod keycloak;
pub mod logs;
pub mod moto;
pub mod oidc;
pub mod stack;
