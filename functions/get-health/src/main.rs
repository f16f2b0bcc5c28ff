#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main(get_health::handler).await
}
