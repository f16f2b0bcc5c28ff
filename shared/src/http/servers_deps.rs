//! What the routes that read or remove servers need: who the caller is and may do (`Access`),
//! and the callers' servers (`Servers`), each read once from the function's settings. The
//! wiring of get-server, delete-server and list-servers alike.

use crate::config::{ConfigError, Vars};
use crate::identity::access::Access;
use crate::server::spawner::Servers;

pub struct ServersDeps {
    pub access: Access,
    pub servers: Servers,
}

impl ServersDeps {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            access: Access::from_vars(vars)?,
            servers: Servers::from_vars(vars)?,
        })
    }
}
