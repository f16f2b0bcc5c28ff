//! The identity-service stand-in for local runs: `identity-service [PORT]` (default: any free
//! port). Prints one JSON line `{"url": ..., "users": [...]}` once it listens, then serves until
//! stopped. Get a token with `curl -d '{"user":"alice"}' -H content-type:application/json <base>/token`.
//! `IDENTITY_STAND_IN_USERS=N` adds N users in the allowed group, `user-001` onwards.

use rexec_stand_ins::identity_service::{IdentityService, dev_users, workshop_users};

#[tokio::main]
async fn main() {
    let port = std::env::args()
        .nth(1)
        .map(|p| p.parse().expect("PORT must be a number"))
        .unwrap_or(0);
    let mut users = dev_users();
    if let Ok(count) = std::env::var("IDENTITY_STAND_IN_USERS") {
        let count = count
            .parse::<u16>()
            .expect("IDENTITY_STAND_IN_USERS must be a number up to 65535");
        users.extend(workshop_users(count.into()));
    }
    let names: Vec<String> = users.iter().map(|(name, _)| name.clone()).collect();
    let service = IdentityService::start_on(port, users).await;
    println!(
        "{}",
        serde_json::json!({"url": service.url(), "token_url": format!("{}/token", service.base_url()), "users": names})
    );
    tokio::signal::ctrl_c().await.ok();
}
