//! The real control plane (scripts/cluster) for a Rust test: started, the project's manifests
//! installed as an operator installs them (`--install`), a kubeconfig of each function's own identity, stopped
//! with its whole process group when dropped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct ControlPlane {
    child: Child,
    /// Its ready line.
    pub ready: Value,
}

impl ControlPlane {
    /// Starts one, or `None` on a machine without Go outside CI (with `CI=true`, a failure).
    pub fn start() -> Option<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let has_go = Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_go && std::env::var_os("CI").is_none() {
            eprintln!("skipped: the real control plane needs Go on PATH");
            return None;
        }
        let mut child = Command::new(root.join("scripts/cluster"))
            .arg("--install")
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("scripts/cluster starts");
        let mut lines = BufReader::new(child.stdout.take().expect("its output")).lines();
        let ready = loop {
            let line = lines
                .next()
                .expect("scripts/cluster ended before its ready line; see its output above")
                .expect("a line");
            if let Ok(ready) = serde_json::from_str::<Value>(&line) {
                break ready;
            }
        };
        Some(Self { child, ready })
    }

    /// kubectl as the administrator; its output, or a panic naming what failed.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(self.ready["kubectl"].as_str().unwrap())
            .arg("--kubeconfig")
            .arg(self.ready["kubeconfig"].as_str().unwrap())
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An object as the administrator reads it; every object of `kind` when `name` is empty.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Value {
        let mut args = vec!["get", kind, "-n", namespace, "-o", "json"];
        if !name.is_empty() {
            args.insert(2, name);
        }
        serde_json::from_str(&self.kubectl(&args)).unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Ctrl-C to the whole group, as a terminal sends it.
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}
