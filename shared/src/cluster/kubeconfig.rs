//! The cluster of a kubeconfig, for local runs and tests: read by kube's own loader, so YAML or
//! JSON, client certificates, tokens and token files, `exec` plugins (`aws eks get-token`,
//! `kubelogin`, …) and contexts all work as kubectl reads them. Only builds with the
//! `local` feature (`make dev`, the tests) have it: the Lambda functions reach EKS alone.
//!
//! The context is `KUBE_CONTEXT` when it is set; else the one named after the function
//! (`AWS_LAMBDA_FUNCTION_NAME`, which `cargo lambda watch` sets to the function's name) when the
//! kubeconfig has one, so that one kubeconfig can give each function its own identity, as EKS
//! does; else the current context.
//!
//! With `KUBE_AS_FUNCTION=true` the kubeconfig's user acts as the function would on EKS (unless
//! the context is the one named after the function, already its own identity), by
//! impersonation (kubectl's `--as`/`--as-group`): user `rexec-lambda:<function>` in the
//! function's group of `deploy/k8s/rbac.yaml` ([`FUNCTION_GROUPS`]), so RBAC refuses locally
//! what it refuses on EKS. The user must be allowed to impersonate them
//! (`deploy/k8s/dev/developer.yaml`).
//!
//! A cluster whose certificate is not checked (`insecure-skip-tls-verify`) is refused unless
//! `KUBE_ALLOW_INSECURE_TLS=true`; credentials go over TLS, or over plain HTTP to the loopback
//! interface only. Errors name what is wrong, never a credential nor the parser's view of the
//! file.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

/// The group of `deploy/k8s/rbac.yaml` each function that reaches the cluster is mapped to, as
/// template.yaml's access entries map its IAM role.
pub const FUNCTION_GROUPS: [(&str, &str); 6] = [
    ("spawn-server", "rexec-lambda-spawn"),
    ("delete-server", "rexec-lambda-delete"),
    ("get-server", "rexec-lambda-read"),
    ("get-broker-config", "rexec-lambda-broker"),
    ("list-servers", "rexec-lambda-list"),
    ("reap-servers", "rexec-lambda-reap"),
];

/// The group `function` acts as.
pub fn group_of(function: &str) -> Option<&'static str> {
    FUNCTION_GROUPS
        .iter()
        .find(|(name, _)| *name == function)
        .map(|(_, group)| *group)
}

/// Which context of a kubeconfig is used, and as whom.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Choice {
    /// `KUBE_CONTEXT`: this one, which must be there.
    pub context: Option<String>,
    /// The function's name: its context, when there is one.
    pub function: Option<String>,
    /// `KUBE_AS_FUNCTION`: impersonate the function's group.
    pub as_function: bool,
    /// `KUBE_ALLOW_INSECURE_TLS`: a development cluster whose certificate is not checked.
    pub allow_insecure: bool,
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

    /// The user and group this choice impersonates in `context`, if any: none in the context
    /// named after the function, which is already its own identity.
    fn impersonation(&self, context: &str) -> Result<Option<(String, &'static str)>, String> {
        if !self.as_function || self.function.as_deref() == Some(context) {
            return Ok(None);
        }
        let function = (self.function.as_deref())
            .ok_or("KUBE_AS_FUNCTION needs the function's name (AWS_LAMBDA_FUNCTION_NAME)")?;
        let group = group_of(function).ok_or_else(|| format!("{function} has no group in deploy/k8s/rbac.yaml"))?;
        Ok(Some((format!("rexec-lambda:{function}"), group)))
    }
}

/// kube's configuration of the kubeconfig at `path`, in the context `choice` picks, acting as
/// `choice` says.
pub async fn config(path: &Path, choice: &Choice) -> Result<kube::Config, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(describe)?;
    let context = choice.pick(&kubeconfig)?;
    if !kubeconfig.contexts.iter().any(|c| c.name == context) {
        return Err(format!("no context named {context:?}"));
    }
    let impersonation = choice.impersonation(&context)?;
    let options = KubeConfigOptions {
        context: Some(context),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(describe)?;
    if config.accept_invalid_certs && !choice.allow_insecure {
        return Err(
            "`insecure-skip-tls-verify` is refused: give the cluster's certificate authority, or set KUBE_ALLOW_INSECURE_TLS=true for a development cluster".into(),
        );
    }
    let url = &config.cluster_url;
    if !crate::https::secure_or_loopback(url.scheme_str().unwrap_or_default(), url.host()) {
        return Err(format!(
            "the server {url} is not https (plain http only to 127.0.0.1, ::1 or localhost)"
        ));
    }
    if let Some((user, group)) = impersonation {
        config.auth_info.impersonate = Some(user);
        config.auth_info.impersonate_groups = Some(vec![group.to_owned()]);
    }
    Ok(config)
}

/// A loader's error in words that show neither the file's content nor a credential.
fn describe(error: KubeconfigError) -> String {
    match error {
        KubeconfigError::ReadConfig(e, _) => format!("cannot be read: {e}"),
        KubeconfigError::Parse(_) => {
            "is not a kubeconfig in YAML or JSON (`kubectl config view` shows what kubectl reads)".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
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

    /// A file of `contents` in the temporary folder, removed when dropped.
    struct File(std::path::PathBuf);

    impl File {
        fn new(name: &str, contents: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!("rexec-{}-{name}", uuid::Uuid::new_v4()));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    async fn read_with(contents: &[u8], choice: &Choice) -> Result<kube::Config, String> {
        let file = File::new("kubeconfig", contents);
        config(&file.0, choice).await
    }

    async fn read_json(value: Value) -> Result<kube::Config, String> {
        read_with(value.to_string().as_bytes(), &Choice::default()).await
    }

    fn token(config: &kube::Config) -> String {
        use secrecy::ExposeSecret;
        config.auth_info.token.as_ref().unwrap().expose_secret().to_owned()
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";

    #[tokio::test]
    async fn yaml_as_kubectl_writes_it_gives_the_server_its_ca_and_the_client_certificate() {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode(PEM);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-dev\nclusters:\n- name: kind-dev\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {data}\nusers:\n- name: kind-dev\n  user:\n    client-certificate-data: {data}\n    client-key-data: {data}\ncontexts:\n- name: kind-dev\n  context:\n    cluster: kind-dev\n    user: kind-dev\n"
        );
        let config = read_with(yaml.as_bytes(), &Choice::default()).await.unwrap();
        assert_eq!(config.cluster_url, "https://127.0.0.1:6443/");
        assert_eq!(config.root_cert, Some(vec![vec![0, 1, 2, 3]]));
        assert!(config.auth_info.client_certificate_data.is_some());
    }

    #[tokio::test]
    async fn a_token_file_is_named_beside_the_kubeconfig() {
        let file = File::new("token", b"from-a-file\n");
        let name = file.0.file_name().unwrap().to_str().unwrap();
        // Named relative to the kubeconfig's folder (the temporary one), not the working one.
        let config = read_json(kubeconfig(
            json!({"server": "http://127.0.0.1:8080"}),
            json!({"tokenFile": name}),
        ))
        .await
        .unwrap();
        assert_eq!(config.auth_info.token_file.as_deref(), Some(file.0.to_str().unwrap()));
        assert_eq!(config.root_cert, None, "no CA: the public authorities");
    }

    #[tokio::test]
    async fn what_is_not_a_kubeconfig_is_refused_without_its_content() {
        let err = read_with(b"users: [s3cret-token", &Choice::default())
            .await
            .err()
            .unwrap();
        assert!(err.contains("not a kubeconfig"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = config(Path::new("/no/such/kubeconfig"), &Choice::default())
            .await
            .err()
            .unwrap();
        assert!(err.contains("cannot be read"), "{err}");
    }

    #[tokio::test]
    async fn a_cluster_whose_certificate_is_not_checked_needs_the_development_switch() {
        let insecure = kubeconfig(
            json!({"server": "https://c", "insecure-skip-tls-verify": true}),
            json!({"token": "t"}),
        );
        let err = read_json(insecure.clone()).await.err().unwrap();
        assert!(err.contains("KUBE_ALLOW_INSECURE_TLS"), "{err}");
        let allowed = Choice {
            allow_insecure: true,
            ..Choice::default()
        };
        let config = read_with(insecure.to_string().as_bytes(), &allowed).await.unwrap();
        assert!(config.accept_invalid_certs);
    }

    #[tokio::test]
    async fn a_credential_goes_in_clear_only_to_the_loopback_interface() {
        for server in ["http://cluster.example", "http://10.0.0.1:8080"] {
            let err = read_json(kubeconfig(json!({"server": server}), json!({"token": "t"})))
                .await
                .err()
                .unwrap();
            assert!(err.contains("not https"), "{err}");
        }
        for server in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"] {
            let config = read_json(kubeconfig(json!({"server": server}), json!({"token": "t"}))).await;
            assert!(config.is_ok(), "{server}: {config:?}", config = config.err());
        }
    }

    #[tokio::test]
    async fn missing_contexts_are_named() {
        let mut config = kubeconfig(json!({"server": "https://c"}), json!({}));
        config["current-context"] = json!("elsewhere");
        let err = read_json(config).await.err().unwrap();
        assert_eq!(err, "no context named \"elsewhere\"");
    }

    #[tokio::test]
    async fn each_function_takes_the_context_named_after_it_unless_kube_context_names_one() {
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
        let bytes = config.to_string();
        let chosen = |context: Option<&str>, function: Option<&str>| {
            let choice = Choice {
                context: context.map(str::to_owned),
                function: function.map(str::to_owned),
                ..Choice::default()
            };
            let bytes = bytes.clone();
            async move { read_with(bytes.as_bytes(), &choice).await.map(|c| token(&c)) }
        };
        assert_eq!(chosen(None, Some("spawn-server")).await.unwrap(), "spawn-server");
        assert_eq!(
            chosen(None, Some("get-server")).await.unwrap(),
            "current",
            "no context of its name"
        );
        assert_eq!(chosen(None, None).await.unwrap(), "current");
        assert_eq!(
            chosen(Some("kind-dev"), Some("spawn-server")).await.unwrap(),
            "kind-dev",
            "KUBE_CONTEXT first"
        );
        assert_eq!(
            chosen(Some("gone"), None).await.err().unwrap(),
            "no context named \"gone\""
        );
    }

    #[tokio::test]
    async fn as_a_function_the_user_impersonates_its_group() {
        let bytes = kubeconfig(json!({"server": "https://c"}), json!({"token": "developer"})).to_string();
        let acting = |function: Option<&str>| Choice {
            function: function.map(str::to_owned),
            as_function: true,
            ..Choice::default()
        };
        let config = read_with(bytes.as_bytes(), &acting(Some("spawn-server")))
            .await
            .unwrap();
        assert_eq!(
            config.auth_info.impersonate.as_deref(),
            Some("rexec-lambda:spawn-server")
        );
        assert_eq!(
            config.auth_info.impersonate_groups,
            Some(vec!["rexec-lambda-spawn".to_owned()])
        );
        assert_eq!(token(&config), "developer", "with the user's own credentials");
        let err = read_with(bytes.as_bytes(), &acting(Some("get-health")))
            .await
            .err()
            .unwrap();
        assert!(err.contains("get-health has no group"), "{err}");
        let err = read_with(bytes.as_bytes(), &acting(None)).await.err().unwrap();
        assert!(err.contains("AWS_LAMBDA_FUNCTION_NAME"), "{err}");
        let own = read_with(bytes.as_bytes(), &Choice::default()).await.unwrap();
        assert_eq!(own.auth_info.impersonate, None, "as its user unless asked");
        let mut named = kubeconfig(json!({"server": "https://c"}), json!({"token": "developer"}));
        named["contexts"][0]["name"] = json!("spawn-server");
        named["current-context"] = json!("spawn-server");
        let config = read_with(named.to_string().as_bytes(), &acting(Some("spawn-server")))
            .await
            .unwrap();
        assert_eq!(
            config.auth_info.impersonate, None,
            "its own context is its own identity"
        );
    }

    #[test]
    fn each_functions_group_is_the_one_rbac_and_the_template_give_it() {
        let rbac = include_str!("../../../deploy/k8s/rbac.yaml");
        let template = include_str!("../../../template.yaml");
        for (function, group) in FUNCTION_GROUPS {
            let row = rbac
                .lines()
                .find(|line| line.trim_start_matches('#').split_whitespace().next() == Some(function))
                .unwrap_or_else(|| panic!("{function} is not in rbac.yaml's table"));
            assert_eq!(row.split_whitespace().nth(2), Some(group), "{row}");
            assert!(template.contains(&format!("KubernetesGroups: [{group}]")), "{group}");
        }
    }
}
