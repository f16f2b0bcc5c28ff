#[tokio::main]
async fn main() -> Result<(), rexec_shared::lambda_http::Error> {
    rexec_shared::http::serve::main(serve_rexec_docs::handler).await
}
