// No code: the build dependencies of Cargo.toml take effect only for a package with a build script.
fn main() {}
