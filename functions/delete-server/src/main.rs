#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main_with(delete_server::Deps::from_vars, delete_server::handler).await
}
