#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main_scheduled(reap_servers::Deps::from_vars, reap_servers::handler).await
}
