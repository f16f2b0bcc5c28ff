//! The cluster of a kubeconfig, for local runs and tests: a context's server and certificate
//! authority, and its user's token or token file.
//!
//! The context is `KUBE_CONTEXT` when it is set; else the one named after the function
//! (`AWS_LAMBDA_FUNCTION_NAME`, which `cargo lambda watch` sets to the function's name) when the
//! kubeconfig has one, so that one kubeconfig gives each function its own identity, as EKS does;
//! else the current context.
//!
//! The file is JSON, which any kubeconfig becomes with
//! `kubectl config view --minify --flatten --raw -o json`: the functions carry no YAML parser.
//! A user or cluster that asks for more than a token (exec and auth-provider plugins, client
//! certificates, basic auth, impersonation, a proxy, TLS without verification) is refused by
//! name rather than half honoured; an EKS cluster is reached with `EKS_CLUSTER_NAME` instead.
//! A token goes over TLS, or over plain HTTP to the loopback interface only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::{Access, certificates};

/// Settings that change nothing about how the API server is reached.
const IGNORED: [&str; 2] = ["extensions", "disable-compression"];

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

/// An entry of `contexts`, `clusters` or `users`: its name, and what it names under the key of
/// its kind.
#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: Option<String>,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct User {
    token: Option<SecretString>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Which context of a kubeconfig is used.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Choice {
    /// `KUBE_CONTEXT`: this one, which must be there.
    pub context: Option<String>,
    /// The function's name: its context, when there is one.
    pub function: Option<String>,
}

impl Choice {
    fn pick(&self, kubeconfig: &Kubeconfig) -> Result<String, String> {
        if let Some(context) = &self.context {
            return Ok(context.clone());
        }
        let has = |name: &String| kubeconfig.contexts.iter().any(|c| &c.name == name);
        match &self.function {
            Some(function) if has(function) => Ok(function.clone()),
            _ => kubeconfig
                .current_context
                .clone()
                .ok_or_else(|| "no current-context".to_owned()),
        }
    }
}

/// The [`Access`] the kubeconfig at `path` describes, in the context `choice` picks; relative
/// paths in it are relative to its folder. Errors name what is wrong, never a credential.
pub fn access(path: &Path, choice: &Choice) -> Result<Access, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let kubeconfig: Kubeconfig = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "not a kubeconfig in JSON (line {}, column {}); `kubectl config view --minify --flatten --raw -o json` writes one",
            e.line(),
            e.column()
        )
    })?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let named = |kind: &str, name: &str| format!("no {kind} named {name:?}");
    let chosen = choice.pick(&kubeconfig)?;
    let context = find(kubeconfig.contexts, &chosen).ok_or_else(|| named("context", &chosen))?;
    let cluster = find(kubeconfig.clusters, &context.cluster).ok_or_else(|| named("cluster", &context.cluster))?;
    let user = match &context.user {
        Some(name) => Some(find(kubeconfig.users, name).ok_or_else(|| named("user", name))?),
        None => None,
    };
    let unsupported = (cluster.other.keys())
        .chain(user.iter().flat_map(|u| u.other.keys()))
        .find(|key| !IGNORED.contains(&key.as_str()));
    if let Some(field) = unsupported {
        return Err(format!(
            "`{field}` is not supported: the user needs a `token` or a `tokenFile` (for EKS set EKS_CLUSTER_NAME)"
        ));
    }
    let url: http::Uri = cluster
        .server
        .parse()
        .map_err(|_| "the server is not a URL".to_owned())?;
    if !crate::https::secure_or_loopback(url.scheme_str().unwrap_or_default(), url.host()) {
        return Err(format!(
            "the server {url} is not https (plain http only to 127.0.0.1, ::1 or localhost)"
        ));
    }
    let ca = match (cluster.ca_data, cluster.ca_file) {
        (Some(data), _) => {
            let pem = STANDARD
                .decode(data.trim())
                .map_err(|_| "certificate-authority-data is not base64".to_owned())?;
            certificates(&pem).ok_or("certificate-authority-data holds no PEM certificate")?
        }
        (None, Some(file)) => {
            let file = folder.join(file);
            let pem = std::fs::read(&file).map_err(|e| format!("{} cannot be read: {e}", file.display()))?;
            certificates(&pem).ok_or_else(|| format!("{} holds no PEM certificate", file.display()))?
        }
        (None, None) => Vec::new(),
    };
    let token = match user {
        Some(User { token: Some(token), .. }) => Some(token),
        Some(User {
            token_file: Some(file), ..
        }) => {
            let file = folder.join(file);
            let token = std::fs::read_to_string(&file)
                .map_err(|e| format!("the token file {} cannot be read: {e}", file.display()))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(format!("the token file {} is empty", file.display()));
            }
            Some(SecretString::from(token))
        }
        _ => None,
    };
    Ok(Access { url, ca, token })
}

fn find<T>(entries: Vec<Named<T>>, name: &str) -> Option<T> {
    entries.into_iter().find(|e| e.name == name).map(|e| e.value)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use serde_json::{Value, json};

    use super::*;

    fn kubeconfig(cluster: Value, user: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": cluster}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        })
    }

    fn read(contents: &[u8]) -> Result<Access, String> {
        read_with(contents, &Choice::default())
    }

    fn read_with(contents: &[u8], choice: &Choice) -> Result<Access, String> {
        let path = std::env::temp_dir().join(format!("rexec-kubeconfig-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        let access = access(&path, choice);
        std::fs::remove_file(&path).unwrap();
        access
    }

    fn read_json(value: Value) -> Result<Access, String> {
        read(value.to_string().as_bytes())
    }

    #[test]
    fn the_current_context_gives_the_server_its_ca_and_the_token() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";
        let base64_pem = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
        let access = read_json(kubeconfig(
            json!({"server": "https://cluster.example:6443", "certificate-authority-data": base64_pem}),
            json!({"token": "t0ken"}),
        ))
        .unwrap();
        assert_eq!(access.url, "https://cluster.example:6443/");
        assert_eq!(access.ca, vec![vec![0, 1, 2, 3]]);
        assert_eq!(access.token.unwrap().expose_secret(), "t0ken");
    }

    #[test]
    fn a_token_file_is_read_and_trimmed_beside_the_kubeconfig() {
        let name = format!("rexec-token-{}", uuid::Uuid::new_v4());
        let file = std::env::temp_dir().join(&name);
        std::fs::write(&file, "from-a-file\n").unwrap();
        // Named relative to the kubeconfig's folder (the temporary one), not the working one.
        let access = read_json(kubeconfig(
            json!({"server": "http://127.0.0.1:8080"}),
            json!({"tokenFile": name}),
        ));
        std::fs::remove_file(&file).unwrap();
        let access = access.unwrap();
        assert_eq!(access.token.unwrap().expose_secret(), "from-a-file");
        assert!(access.ca.is_empty(), "no CA: the public authorities");
    }

    #[test]
    fn yaml_is_refused_with_the_command_that_converts_it() {
        let err = read(b"apiVersion: v1\nkind: Config\n").err().unwrap();
        assert!(err.contains("JSON") && err.contains("kubectl config view"), "{err}");
    }

    #[test]
    fn what_the_client_does_not_do_is_refused_by_name() {
        let server = json!({"server": "https://cluster.example"});
        for (user, field) in [
            (
                json!({"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}),
                "exec",
            ),
            (json!({"auth-provider": {"name": "oidc"}}), "auth-provider"),
            (json!({"username": "admin", "password": "s3cret-password"}), "password"),
            (
                json!({"client-certificate-data": "AA==", "client-key-data": "AA=="}),
                "client-certificate-data",
            ),
            (json!({"token": "s3cret-token", "as": "system:admin"}), "as"),
        ] {
            let err = read_json(kubeconfig(server.clone(), user)).err().unwrap();
            assert!(err.contains(&format!("`{field}`")), "{err}");
            assert!(!err.contains("s3cret"), "no credential in {err}");
        }
        for (cluster, field) in [
            (
                json!({"server": "https://c", "insecure-skip-tls-verify": true}),
                "insecure-skip-tls-verify",
            ),
            (
                json!({"server": "https://c", "proxy-url": "http://proxy:3128"}),
                "proxy-url",
            ),
            (
                json!({"server": "https://c", "tls-server-name": "other"}),
                "tls-server-name",
            ),
        ] {
            let err = read_json(kubeconfig(cluster, json!({}))).err().unwrap();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
        let harmless = json!({"server": "https://c", "extensions": [{"name": "cluster_info", "extension": {}}]});
        assert!(read_json(kubeconfig(harmless, json!({"token": "t"}))).is_ok());
    }

    #[test]
    fn a_token_goes_in_clear_only_to_the_loopback_interface() {
        for server in ["http://cluster.example", "http://10.0.0.1:8080"] {
            let err = read_json(kubeconfig(json!({"server": server}), json!({"token": "t"})))
                .err()
                .unwrap();
            assert!(err.contains("not https"), "{err}");
        }
        for server in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
            assert!(
                read_json(kubeconfig(json!({"server": server}), json!({"token": "t"}))).is_ok(),
                "{server}"
            );
        }
    }

    #[test]
    fn missing_files_and_contexts_are_named() {
        let err = access(Path::new("/no/such/kubeconfig"), &Choice::default())
            .err()
            .unwrap();
        assert!(err.contains("cannot be read"), "{err}");
        let mut config = kubeconfig(json!({"server": "https://c"}), json!({}));
        config["current-context"] = json!("elsewhere");
        let err = read_json(config).err().unwrap();
        assert_eq!(err, "no context named \"elsewhere\"");
        let mut config = kubeconfig(json!({"server": "https://c"}), json!({}));
        config["contexts"][0]["context"]["user"] = json!("nobody");
        let err = read_json(config).err().unwrap();
        assert_eq!(err, "no user named \"nobody\"");
    }

    #[test]
    fn each_function_takes_the_context_named_after_it_unless_kube_context_names_one() {
        let mut config = kubeconfig(json!({"server": "https://c"}), json!({"token": "current"}));
        for name in ["spawn-server", "kind-dev"] {
            config["users"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": name, "user": {"token": name}}));
            config["contexts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": name, "context": {"cluster": "k", "user": name}}));
        }
        let token = |choice: Choice| {
            let access = read_with(config.to_string().as_bytes(), &choice).unwrap();
            access.token.unwrap().expose_secret().to_owned()
        };
        let function = |name: &str| Some(name.to_owned());
        assert_eq!(
            token(Choice {
                context: None,
                function: function("spawn-server")
            }),
            "spawn-server"
        );
        assert_eq!(
            token(Choice {
                context: None,
                function: function("get-server")
            }),
            "current",
            "no context of its name"
        );
        assert_eq!(
            token(Choice {
                context: None,
                function: None
            }),
            "current"
        );
        assert_eq!(
            token(Choice {
                context: Some("kind-dev".into()),
                function: function("spawn-server")
            }),
            "kind-dev",
            "KUBE_CONTEXT first"
        );
        let err = read_with(
            config.to_string().as_bytes(),
            &Choice {
                context: Some("gone".into()),
                function: None,
            },
        )
        .err()
        .unwrap();
        assert_eq!(err, "no context named \"gone\"");
    }
}
