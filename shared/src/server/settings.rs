//! What every caller's server is built with: image, pinned server source, resources, egress,
//! and the broker's in-cluster Service. Read by the spawner only: get-server and delete-server
//! never parse these settings.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::broker::BrokerService;
use crate::cluster::quantity;
use crate::config::{ConfigError, Vars};

/// The rexec-server's own requirements, each an exact version with the SHA-256 of every file
/// PyPI holds for it (written by scripts/pin_server_requirements.py): the default of
/// `REXEC_SERVER_REQUIREMENTS`.
pub const SERVER_REQUIREMENTS: &str = include_str!("server-requirements.txt");

/// A requirement line without its `--hash=` options.
fn without_hashes(line: &str) -> String {
    line.split_whitespace()
        .filter(|word| !word.starts_with("--hash="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default image: Python with uv, from uv's publisher.
pub const DEFAULT_IMAGE: &str = "ghcr.io/astral-sh/uv:python{python}-bookworm-slim";

/// What every caller's server is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Image with `{python}` standing for the interpreter version (`REXEC_SERVER_IMAGE`).
    pub image: String,
    /// The digest of each interpreter's image (`REXEC_SERVER_IMAGE_DIGESTS`), by version: a
    /// server or build runs the image of that digest, never whatever its tag names today.
    pub image_digests: BTreeMap<String, String>,
    /// Pinned rexec-server source archive (`REXEC_SERVER_SOURCE`).
    pub source: String,
    /// Its SHA-256 (`REXEC_SERVER_SOURCE_SHA256`), always checked before it is installed.
    pub source_sha256: String,
    /// The server's own dependencies (`REXEC_SERVER_REQUIREMENTS`, comma-separated).
    pub server_requirements: Vec<String>,
    /// What installs the requirements (`REXEC_INSTALLER`).
    pub installer: Installer,
    pub broker: BrokerService,
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub storage_request: String,
    pub storage_limit: String,
    pub egress: Egress,
    /// Where environments are built and kept.
    pub environments: EnvironmentSettings,
}

/// What installs a server's requirements. `uv` needs an image that carries it (the default
/// image does); `pip` works with any Python image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    Uv,
    Pip,
}

impl Installer {
    /// `REXEC_INSTALLER`: `uv` (the default) or `pip`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        match vars.get("REXEC_INSTALLER").unwrap_or("uv") {
            "uv" => Ok(Self::Uv),
            "pip" => Ok(Self::Pip),
            _ => Err(ConfigError::new("REXEC_INSTALLER", "must be uv or pip")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uv => "uv",
            Self::Pip => "pip",
        }
    }
}

/// Where a server may connect besides DNS and the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// HTTP(S) on the public internet, every private, link-local and NAT64 range excluded, and
    /// the cluster's service ranges (`REXEC_CLUSTER_SERVICE_CIDRS`) and the VPC's
    /// (`REXEC_VPC_CIDRS`, whose IPv6 ranges are public addresses) too.
    PublicInternet { excluded: Vec<String> },
    /// Only the package-index proxy (`REXEC_PACKAGE_INDEX_PROXY`), pip's index.
    Proxy { url: String, address: IpAddr, port: u16 },
}

impl Egress {
    fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        if let Some(url) = vars.url("REXEC_PACKAGE_INDEX_PROXY")? {
            let address = match url.host() {
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
                _ => {
                    return Err(ConfigError::new(
                        "REXEC_PACKAGE_INDEX_PROXY",
                        "the host must be an IP address: a NetworkPolicy cannot name a host",
                    ));
                }
            };
            let port = url.port_or_known_default().expect("http and https have a port");
            return Ok(Self::Proxy {
                url: url.to_string(),
                address,
                port,
            });
        }
        let mut excluded = Vec::new();
        for (name, cidrs) in [
            ("REXEC_CLUSTER_SERVICE_CIDRS", vars.list("REXEC_CLUSTER_SERVICE_CIDRS")),
            ("REXEC_VPC_CIDRS", vars.list("REXEC_VPC_CIDRS")),
        ] {
            if let Some(bad) = cidrs.iter().find(|c| !is_cidr(c)) {
                return Err(ConfigError::new(
                    name,
                    format!("{bad:?} is not a CIDR such as 10.100.0.0/16 or 2600:1f18::/56"),
                ));
            }
            excluded.extend(cidrs);
        }
        Ok(Self::PublicInternet { excluded })
    }
}

/// Whether `s` is an IPv4 or IPv6 CIDR block (`address/prefix`).
fn is_cidr(s: &str) -> bool {
    let Some((address, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => prefix <= 32,
        Ok(IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

impl ServerSettings {
    /// The image of a server or build for a python version, by its digest.
    pub fn image_for(&self, python: &str) -> String {
        let image = self.image.replace("{python}", python);
        match self.image_digests.get(python) {
            Some(digest) => format!("{image}@{digest}"),
            None => image,
        }
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let image = vars.get("REXEC_SERVER_IMAGE").unwrap_or(DEFAULT_IMAGE).to_owned();
        if !image.contains("{python}") {
            return Err(ConfigError::new(
                "REXEC_SERVER_IMAGE",
                "must contain {python}, replaced by the interpreter version",
            ));
        }
        let source = vars.url("REXEC_SERVER_SOURCE")?.map_or_else(
            || {
                "https://github.com/sci-ndp/SciDx-rexec-server/archive/77c5c100b3766f652a4947e276bb273d04bb5ef4.tar.gz"
                    .to_owned()
            },
            String::from,
        );
        // Every server runs this archive's code: it is never installed unchecked.
        let Some(source_sha256) = vars.get("REXEC_SERVER_SOURCE_SHA256") else {
            return Err(ConfigError::new(
                "REXEC_SERVER_SOURCE_SHA256",
                format!(
                    "is required: the SHA-256 of {source}, checked before it is installed (curl -sL <url> | sha256sum)"
                ),
            ));
        };
        if source_sha256.len() != 64 || !source_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::new(
                "REXEC_SERVER_SOURCE_SHA256",
                "must be 64 hexadecimal digits",
            ));
        }
        let source_sha256 = source_sha256.to_ascii_lowercase();
        let image_digests = image_digests(vars, &image)?;
        let installer = Installer::from_vars(vars)?;
        let mut server_requirements = vars.list("REXEC_SERVER_REQUIREMENTS");
        if server_requirements.is_empty() {
            server_requirements = SERVER_REQUIREMENTS
                .lines()
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(String::from)
                .collect();
        }
        if installer == Installer::Pip {
            // Once one line has a hash, pip requires one on every line, the caller's too.
            for line in &mut server_requirements {
                *line = without_hashes(line);
            }
        }
        Ok(Self {
            image,
            image_digests,
            installer,
            source,
            source_sha256,
            server_requirements,
            broker: BrokerService::from_vars(vars)?,
            cpu_request: quantity_or(vars, "REXEC_SERVER_CPU_REQUEST", "250m")?,
            cpu_limit: quantity_or(vars, "REXEC_SERVER_CPU_LIMIT", "2")?,
            memory_request: quantity_or(vars, "REXEC_SERVER_MEMORY_REQUEST", "512Mi")?,
            memory_limit: quantity_or(vars, "REXEC_SERVER_MEMORY_LIMIT", "4Gi")?,
            storage_request: quantity_or(vars, "REXEC_SERVER_EPHEMERAL_STORAGE_REQUEST", "1Gi")?,
            storage_limit: quantity_or(vars, "REXEC_SERVER_EPHEMERAL_STORAGE_LIMIT", "8Gi")?,
            egress: Egress::from_vars(vars)?,
            environments: EnvironmentSettings::from_vars(vars)?,
        })
    }
}

/// The interpreters a caller may pin (`REXEC_PYTHON_VERSIONS`, 3.10 to 3.13 by default).
pub fn python_versions(vars: &Vars) -> Result<Vec<String>, ConfigError> {
    let mut versions = vars.list("REXEC_PYTHON_VERSIONS");
    if versions.is_empty() {
        versions = ["3.10", "3.11", "3.12", "3.13"].map(String::from).to_vec();
    }
    if let Some(bad) = versions.iter().find(|v| !is_minor_version(v)) {
        return Err(ConfigError::new(
            "REXEC_PYTHON_VERSIONS",
            format!("{bad:?} is not a version like 3.11"),
        ));
    }
    Ok(versions)
}

fn is_minor_version(v: &str) -> bool {
    let mut parts = v.split('.');
    let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()
}

/// Where environments are built and kept, and the bounds on their builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentSettings {
    /// The namespace of the builds and of the writable claim (`REXEC_ENV_NAMESPACE`).
    pub namespace: String,
    /// The storage class of the shared volume (`REXEC_ENV_STORAGE_CLASS`).
    pub storage_class: String,
    /// How long a completed build is used (`REXEC_ENV_MAX_AGE`, seconds).
    pub max_age: Duration,
    /// A build's deadline (`REXEC_BUILD_TIMEOUT`): past it, Kubernetes stops it and it fails.
    pub build_timeout: Duration,
    /// The most a build may write, in bytes (`REXEC_BUILD_MAX_SIZE`, a quantity such as 10Gi):
    /// over it, the build fails and its directory is emptied.
    pub build_max_bytes: u64,
    /// Builds unfinished at once, every caller's (`REXEC_MAX_BUILDS`); the builds' quota
    /// allows as many pods.
    pub max_builds: u32,
    /// How long an environment no server uses is kept (`REXEC_ENV_RETENTION`).
    pub retention: Duration,
}

impl EnvironmentSettings {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let max_age = vars.seconds_or("REXEC_ENV_MAX_AGE", Duration::from_secs(7 * 24 * 3600))?;
        if max_age.is_zero() {
            return Err(ConfigError::new("REXEC_ENV_MAX_AGE", "must be more than 0"));
        }
        let build_timeout = vars.seconds_or("REXEC_BUILD_TIMEOUT", Duration::from_secs(600))?;
        if build_timeout.is_zero() {
            return Err(ConfigError::new("REXEC_BUILD_TIMEOUT", "must be more than 0"));
        }
        let max_size = vars.get("REXEC_BUILD_MAX_SIZE").unwrap_or("10Gi");
        let build_max_bytes = quantity::bytes(max_size)
            .filter(|&b| b > 0)
            .ok_or_else(|| ConfigError::new("REXEC_BUILD_MAX_SIZE", "expected a size such as 10Gi or 500M"))?;
        let max_builds = vars.parse_or("REXEC_MAX_BUILDS", 20u32)?;
        if max_builds == 0 {
            return Err(ConfigError::new("REXEC_MAX_BUILDS", "must be 1 or more"));
        }
        let retention = vars.seconds_or("REXEC_ENV_RETENTION", Duration::from_secs(7 * 24 * 3600))?;
        if retention.is_zero() {
            return Err(ConfigError::new("REXEC_ENV_RETENTION", "must be more than 0"));
        }
        Ok(Self {
            retention,
            build_timeout,
            build_max_bytes,
            max_builds,
            namespace: vars
                .get("REXEC_ENV_NAMESPACE")
                .unwrap_or("rexec-environments")
                .to_owned(),
            storage_class: vars
                .get("REXEC_ENV_STORAGE_CLASS")
                .unwrap_or("rexec-environments")
                .to_owned(),
            max_age,
        })
    }
}

/// A resource setting, `default` when unset, read as the API server reads quantities.
fn quantity_or(vars: &Vars, name: &str, default: &str) -> Result<String, ConfigError> {
    let text = vars.get(name).unwrap_or(default);
    quantity::value(text)
        .map(|_| text.to_owned())
        .ok_or_else(|| ConfigError::new(name, "expected a quantity such as 250m, 512Mi or 8Gi"))
}

/// `REXEC_SERVER_IMAGE_DIGESTS`: `3.11=sha256:<64 hex digits>`, comma-separated, one for every
/// interpreter of `REXEC_PYTHON_VERSIONS`. Required: no server runs an image its tag alone names.
fn image_digests(vars: &Vars, image: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    const VARIABLE: &str = "REXEC_SERVER_IMAGE_DIGESTS";
    let mut digests = BTreeMap::new();
    for entry in vars.list("REXEC_SERVER_IMAGE_DIGESTS") {
        let Some((version, digest)) = entry.split_once('=') else {
            return Err(ConfigError::new(
                VARIABLE,
                "entries are 3.11=sha256:<64 hexadecimal digits>",
            ));
        };
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::new(
                VARIABLE,
                format!("the digest of {version} is not sha256:<64 hexadecimal digits>"),
            ));
        }
        digests.insert(
            version.trim().to_owned(),
            format!("sha256:{}", hex.to_ascii_lowercase()),
        );
    }
    let versions = python_versions(vars)?;
    if let Some(missing) = versions.iter().find(|v| !digests.contains_key(*v)) {
        let example = image.replace("{python}", missing);
        return Err(ConfigError::new(
            VARIABLE,
            format!(
                "is required, with the digest of the image of every interpreter of REXEC_PYTHON_VERSIONS ({}): {missing} has none (docker buildx imagetools inspect {example})",
                versions.join(", ")
            ),
        ));
    }
    Ok(digests)
}

/// Settings for unit tests: `pairs` over the required source SHA-256 (no test fetches the
/// source through these).
#[cfg(test)]
pub(crate) fn test_settings(pairs: &[(&str, &str)]) -> Result<ServerSettings, ConfigError> {
    let digests = ["3.10", "3.11", "3.12", "3.13"].map(|v| format!("{v}=sha256:{}", "d1".repeat(32)));
    let mut all = vec![
        ("REXEC_SERVER_SOURCE_SHA256", "5e1f".repeat(16)),
        ("REXEC_SERVER_IMAGE_DIGESTS", digests.join(",")),
    ];
    all.extend(pairs.iter().map(|&(k, v)| (k, v.to_owned())));
    ServerSettings::from_vars(&Vars::from_pairs(all.iter().map(|(k, v)| (*k, v.as_str()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated() {
        let err = test_settings(&[("REXEC_SERVER_IMAGE", "python:3.11")]).unwrap_err();
        assert_eq!(err.variable, "REXEC_SERVER_IMAGE");
        let err = test_settings(&[("REXEC_SERVER_SOURCE_SHA256", "abc")]).unwrap_err();
        assert_eq!(err.variable, "REXEC_SERVER_SOURCE_SHA256");
        let err = test_settings(&[("REXEC_INSTALLER", "conda")]).unwrap_err();
        assert_eq!(err.variable, "REXEC_INSTALLER");
        let err = test_settings(&[("REXEC_BROKER_PORT", "x")]).unwrap_err();
        assert_eq!(err.variable, "REXEC_BROKER_PORT");
        assert_eq!(test_settings(&[]).unwrap().source_sha256, "5e1f".repeat(16));
    }

    #[test]
    fn build_bounds_are_settings() {
        let s = EnvironmentSettings::from_vars(&Vars::default()).unwrap();
        assert_eq!(
            (s.build_timeout, s.build_max_bytes, s.max_builds),
            (Duration::from_secs(600), 10 << 30, 20)
        );
        for (name, bad) in [
            ("REXEC_BUILD_MAX_SIZE", "ten"),
            ("REXEC_BUILD_MAX_SIZE", "0"),
            ("REXEC_BUILD_MAX_SIZE", "1.5"),
            ("REXEC_BUILD_MAX_SIZE", "99999999999Ti"),
            ("REXEC_BUILD_TIMEOUT", "0"),
            ("REXEC_MAX_BUILDS", "0"),
            ("REXEC_MAX_BUILDS", "-1"),
            ("REXEC_ENV_RETENTION", "0"),
        ] {
            let err = EnvironmentSettings::from_vars(&Vars::from_pairs([(name, bad)])).unwrap_err();
            assert_eq!(err.variable, name, "{bad}");
        }
    }

    #[test]
    fn resources_are_quantities() {
        let settings = test_settings(&[("REXEC_SERVER_MEMORY_LIMIT", "1.5Gi")]).unwrap();
        assert_eq!(
            (settings.cpu_request.as_str(), settings.memory_limit.as_str()),
            ("250m", "1.5Gi")
        );
        for (name, bad) in [
            ("REXEC_SERVER_CPU_REQUEST", "lots"),
            ("REXEC_SERVER_CPU_LIMIT", "-1"),
            ("REXEC_SERVER_MEMORY_REQUEST", "512 Mi"),
            ("REXEC_SERVER_MEMORY_LIMIT", "4GB"),
            ("REXEC_SERVER_EPHEMERAL_STORAGE_REQUEST", "1e40"),
            ("REXEC_SERVER_EPHEMERAL_STORAGE_LIMIT", "$(HOME)"),
        ] {
            let err = test_settings(&[(name, bad)]).unwrap_err();
            assert_eq!(err.variable, name, "{bad}");
        }
    }

    #[test]
    fn the_source_is_never_installed_unchecked() {
        let err = ServerSettings::from_vars(&Vars::default()).unwrap_err();
        assert_eq!(err.variable, "REXEC_SERVER_SOURCE_SHA256");
        assert!(err.to_string().contains("is required"), "{err}");
        let upper = test_settings(&[("REXEC_SERVER_SOURCE_SHA256", &"AB".repeat(32))]).unwrap();
        assert_eq!(
            upper.source_sha256,
            "ab".repeat(32),
            "compared with hashlib's lowercase digest"
        );
    }

    #[test]
    fn every_interpreters_image_is_run_by_its_digest() {
        let settings = test_settings(&[]).unwrap();
        assert_eq!(
            settings.image_for("3.11"),
            format!(
                "ghcr.io/astral-sh/uv:python3.11-bookworm-slim@sha256:{}",
                "d1".repeat(32)
            )
        );
        let digest = format!("sha256:{}", "AB".repeat(32));
        let only = |versions: &str, digests: &str| {
            test_settings(&[
                ("REXEC_PYTHON_VERSIONS", versions),
                ("REXEC_SERVER_IMAGE_DIGESTS", digests),
            ])
        };
        let err = only("3.11,3.12", &format!("3.11={digest}")).unwrap_err();
        assert_eq!(err.variable, "REXEC_SERVER_IMAGE_DIGESTS");
        assert!(err.to_string().contains("3.12 has none"), "{err}");
        assert!(
            err.to_string()
                .contains("imagetools inspect ghcr.io/astral-sh/uv:python3.12-bookworm-slim"),
            "{err}"
        );
        for bad in [
            "3.11",
            "3.11=latest",
            "3.11=sha256:abc",
            &format!("3.11=sha512:{}", "ab".repeat(32)),
        ] {
            assert_eq!(
                only("3.11", bad).unwrap_err().variable,
                "REXEC_SERVER_IMAGE_DIGESTS",
                "{bad}"
            );
        }
        let lower = only("3.11", &format!("3.11={digest}")).unwrap();
        assert!(
            lower
                .image_for("3.11")
                .ends_with(&format!("@sha256:{}", "ab".repeat(32)))
        );
        let missing = ServerSettings::from_vars(&Vars::from_pairs([(
            "REXEC_SERVER_SOURCE_SHA256",
            "ab".repeat(32).as_str(),
        )]));
        assert!(missing.unwrap_err().to_string().contains("is required"));
    }

    #[test]
    fn the_servers_own_requirements_are_pinned_with_their_hashes_which_pip_is_not_given() {
        let uv = test_settings(&[]).unwrap().server_requirements;
        // scidx-rexec and every package it pins, each at one version with its files' digests.
        let names: Vec<&str> = uv.iter().map(|l| l.split("==").next().unwrap()).collect();
        assert_eq!(
            names,
            ["scidx-rexec", "dill", "pyzmq", "dxspaces", "packaging", "cryptography"]
        );
        for line in &uv {
            let mut words = line.split(' ');
            let pin = words.next().unwrap();
            assert!(pin.contains("==") && !pin.contains('*'), "{pin} is an exact version");
            let digests: Vec<&str> = words.map(|w| w.strip_prefix("--hash=sha256:").unwrap()).collect();
            assert!(!digests.is_empty(), "{pin} has its hashes");
            assert!(
                digests
                    .iter()
                    .all(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            );
        }
        let pip = test_settings(&[("REXEC_INSTALLER", "pip")])
            .unwrap()
            .server_requirements;
        let pins: Vec<&str> = uv.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            pip, pins,
            "the same versions, without the hashes pip would demand of every line"
        );
        let chosen = test_settings(&[("REXEC_SERVER_REQUIREMENTS", "pyzmq,dill==0.4.0")]).unwrap();
        assert_eq!(chosen.server_requirements, ["pyzmq", "dill==0.4.0"]);
    }
}
