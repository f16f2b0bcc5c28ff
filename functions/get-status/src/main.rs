#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main_with(get_status::Deps::from_vars, get_status::handler).await
}
