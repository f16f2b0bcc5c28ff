#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main_with(spawn_server::Deps::from_vars, spawn_server::handler).await
}
