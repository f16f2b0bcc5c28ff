#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main_with(list_servers::Deps::from_vars, list_servers::handler).await
}
