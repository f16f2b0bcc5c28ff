//! What went wrong on the cluster, by meaning: the API server's answers read with kube's own
//! predicates and the reason text, so the layers above never look at status codes.

/// What went wrong on the cluster, by meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// A write lost a race (stale `resourceVersion`).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The namespace is being deleted: nothing can be created in it until it is gone.
    #[error("namespace terminating")]
    Terminating,
    /// A ResourceQuota of the namespace refused a creation: its room is taken.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// RBAC refused a call: the function's role lacks a permission.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The admission of a namespace just made is not ready yet: its default service account, or
    /// the usage of a quota just made, is still being made by the controller manager (the
    /// ServiceAccount and ResourceQuota admission plug-ins refuse pods until then).
    #[error("not ready: {0}")]
    NotReady(String),
    /// A list's `continue` token or a watch's version is too old: list again from the start.
    #[error("expired: {0}")]
    Expired(String),
    /// The cluster is unreachable, timed out or answered 5xx.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// Anything else the API server refused (a bug of ours).
    #[error("refused: {0}")]
    Refused(String),
}

impl From<kube::Error> for ClusterError {
    /// Reads an API server's answer by meaning, with kube's own predicates and the reason text.
    fn from(err: kube::Error) -> Self {
        let kube::Error::Api(status) = err else {
            return Self::Unavailable(describe(&err));
        };
        let terminating = status.message.contains("being terminated")
            || status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
        // A 404 without a Status ("404 page not found") is the API server's answer for a path
        // it does not serve: an API group that is not installed (metrics.k8s.io).
        if status.is_not_found() || status.code == 404 {
            Self::NotFound
        } else if status.is_already_exists() {
            Self::AlreadyExists
        } else if status.is_conflict() {
            Self::Conflict(status.message)
        } else if status.is_forbidden() && terminating {
            Self::Terminating
        } else if status.is_forbidden() && status.message.contains("exceeded quota") {
            Self::QuotaExceeded(status.message)
        } else if status.is_forbidden()
            && (status.message.contains("error looking up service account")
                || status.message.contains("status unknown for quota"))
        {
            Self::NotReady(status.message)
        } else if status.is_forbidden() {
            Self::Forbidden(status.message)
        } else if status.code == 410 {
            Self::Expired(status.message)
        } else if matches!(status.code, 401 | 429 | 500..=599) {
            Self::Unavailable(format!("the API server answered {}", status.code))
        } else {
            Self::Refused(status.message)
        }
    }
}

/// A client's error in words fit for the log: an exec plugin's output (which may hold a
/// credential) is never quoted, whether the client was being built or a call needed a token.
pub(super) fn describe(error: &kube::Error) -> String {
    use kube::client::AuthError;
    match error {
        kube::Error::Auth(AuthError::AuthExecRun { cmd, out }) => {
            format!("the exec plugin `{cmd}` failed ({})", out.status)
        }
        kube::Error::Auth(AuthError::AuthExecParse(_)) => "the exec plugin's output is not an ExecCredential".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_plugins_output_is_never_quoted() {
        use std::os::unix::process::ExitStatusExt;
        let failed = kube::Error::Auth(kube::client::AuthError::AuthExecRun {
            cmd: "aws".into(),
            out: Box::new(std::process::Output {
                status: std::process::ExitStatus::from_raw(256),
                stdout: b"{\"status\": {\"token\": \"SECRET-1\"}}".to_vec(),
                stderr: b"SECRET-2".to_vec(),
            }),
        });
        let text = ClusterError::from(failed).to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("the exec plugin `aws` failed"), "{text}");
    }

    fn answer(status: serde_json::Value) -> ClusterError {
        let status: kube::core::Status = serde_json::from_value(status).unwrap();
        ClusterError::from(kube::Error::Api(status.into()))
    }

    #[test]
    fn answers_are_read_by_meaning() {
        let not_found = serde_json::json!({"status": "Failure", "reason": "NotFound", "code": 404, "message": "pods \"x\" not found"});
        assert_eq!(answer(not_found), ClusterError::NotFound);
        // What the API server answers for a group it does not serve, in plain text.
        let not_served =
            serde_json::json!({"status": "Failure", "reason": "Failed", "code": 404, "message": "404 page not found"});
        assert_eq!(answer(not_served), ClusterError::NotFound);
        let quota = serde_json::json!({"status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "pods \"p\" is forbidden: exceeded quota: rexec-quota"});
        assert!(matches!(answer(quota), ClusterError::QuotaExceeded(_)));
        // What the admission plug-ins answer in a namespace made a moment ago.
        for message in [
            "pods \"rexec-server-1\" is forbidden: error looking up service account rexec-u/default: serviceaccount \"default\" not found",
            "pods \"rexec-server-1\" is forbidden: status unknown for quota: rexec-quota, resource: pods",
        ] {
            let status =
                serde_json::json!({"status": "Failure", "reason": "Forbidden", "code": 403, "message": message});
            assert!(matches!(answer(status), ClusterError::NotReady(_)), "{message}");
        }
        let rbac = serde_json::json!({"status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "pods is forbidden: User \"x\" cannot create resource \"pods\""});
        assert!(matches!(answer(rbac), ClusterError::Forbidden(_)));
    }
}
