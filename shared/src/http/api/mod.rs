//! The wire contract of both APIs: the bodies they read, the answers they give and every
//! documented operation, from which each API's OpenAPI document is built. The handlers answer
//! with these types.
//!
//! Each document is also kept as published, in `shared/openapi/` (as Kubernetes keeps its own):
//! the documentation functions serve that file and build nothing, and a change of the contract
//! shows in review. A test says when a file is out of date, and writes it again with
//! `UPDATE_OPENAPI=1 cargo test -p rexec-shared published`.

pub mod ndp;
pub mod rexec;

use utoipa::openapi::OpenApi;

/// A document as published: its title (for the documentation pages) and its JSON.
pub struct Published {
    pub title: &'static str,
    pub json: &'static str,
}

/// Stamps the release's version on a document.
fn versioned(mut document: OpenApi) -> OpenApi {
    document.info.version = env!("CARGO_PKG_VERSION").into();
    document
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_published_documents_are_the_ones_the_contract_builds() {
        for (file, built, published) in [
            ("ndp.json", &*ndp::OPENAPI, &ndp::PUBLISHED),
            ("rexec.json", &*rexec::OPENAPI, &rexec::PUBLISHED),
        ] {
            assert_eq!(published.title, built.info.title, "{file}");
            let json = serde_json::to_string_pretty(built).unwrap() + "\n";
            if std::env::var_os("UPDATE_OPENAPI").is_some() {
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi").join(file);
                std::fs::write(path, &json).unwrap();
            } else {
                assert!(
                    json == published.json,
                    "shared/openapi/{file} is not the document the contract builds: write it again with \
                     `UPDATE_OPENAPI=1 cargo test -p rexec-shared published` and review the change"
                );
            }
        }
    }
}
