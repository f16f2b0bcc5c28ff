//! ResourceQuota admission, as the API server's quota plug-in does it: a creation is refused
//! with 403 "exceeded quota" when any quota of the namespace would go over a hard limit, for
//! object counts (`pods`, `configmaps`, `count/<resource>`) and for the compute resources of
//! pods (`requests.*` and `limits.*` of cpu, memory and ephemeral-storage, with `cpu` and
//! `memory` meaning their requests). A pod that leaves out a resource a quota tracks is refused
//! ("must specify"). Every quota's `status` says its `hard` and `used`, as the quota controller
//! writes them.

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::status::{Target, status};
use super::store::Store;

/// Compute resources a pod is charged for, by the quota names that track them.
const COMPUTE: [(&str, &str, &str); 8] = [
    ("requests.cpu", "requests", "cpu"),
    ("cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("memory", "requests", "memory"),
    ("requests.ephemeral-storage", "requests", "ephemeral-storage"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
    ("limits.ephemeral-storage", "limits", "ephemeral-storage"),
];

/// A Kubernetes quantity (`250m`, `512Mi`, `2`, `1G`, `1e3`) as a number of base units, read by
/// `kube_quantity` as the API server reads it.
pub(super) fn parse_quantity(text: &str) -> Option<f64> {
    kube_quantity::ParsedQuantity::try_from(text).ok()?.to_bytes_f64()
}

/// A quantity written back as the API server would: binary suffixes for whole multiples of
/// 1Ki, milli-units for fractions.
fn format_quantity(value: f64) -> String {
    for (suffix, scale) in [("Gi", 1024f64.powi(3)), ("Mi", 1024f64.powi(2)), ("Ki", 1024.0)] {
        if value >= scale && (value / scale).fract() == 0.0 {
            return format!("{}{suffix}", value / scale);
        }
    }
    if value.fract() == 0.0 {
        format!("{value}")
    } else {
        format!("{}m", (value * 1000.0).round())
    }
}

/// What `object`, created as `resource`, is charged for the quota name `tracked`: `Ok(None)`
/// when it is not charged for it; `Err(container)` when it must say the resource and does not.
fn charge(resource: &str, object: &Value, tracked: &str) -> Result<Option<f64>, String> {
    if tracked == resource || tracked == format!("count/{resource}") {
        return Ok(Some(1.0));
    }
    let Some((_, kind, name)) = COMPUTE.iter().find(|(q, _, _)| *q == tracked) else {
        return Ok(None);
    };
    if resource != "pods" {
        return Ok(None);
    }
    let amount = |container: &Value| -> Result<f64, String> {
        container["resources"][kind][name]
            .as_str()
            .and_then(parse_quantity)
            .ok_or_else(|| container["name"].as_str().unwrap_or_default().to_owned())
    };
    let containers = |list: &str| object["spec"][list].as_array().cloned().unwrap_or_default();
    // A pod is charged the larger of its containers' sum and its largest init container.
    let mut sum = 0.0;
    for container in containers("containers") {
        sum += amount(&container)?;
    }
    let mut init: f64 = 0.0;
    for container in containers("initContainers") {
        init = init.max(amount(&container)?);
    }
    Ok(Some(sum.max(init)))
}

/// What the objects of `namespace` use of `tracked`.
fn used(store: &Store, namespace: &str, tracked: &str) -> f64 {
    store
        .objects
        .iter()
        .filter(|((_, ns, _), _)| ns == namespace)
        .filter_map(|((resource, _, _), object)| charge(resource, object, tracked).ok().flatten())
        .sum()
}

/// 403 as the quota admission answers it when a ResourceQuota of the namespace has no room for
/// `object`, or when `object` leaves out a resource a quota tracks.
pub(super) fn refusal(store: &Store, target: &Target, name: &str, object: &Value) -> Option<Response> {
    let forbidden = |message: String| {
        status(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {message}", target.resource),
            json!({"name": name, "kind": target.resource}),
        )
    };
    for ((resource, namespace, quota), spec) in &store.objects {
        if resource != "resourcequotas" || *namespace != target.namespace {
            continue;
        }
        let Some(hard) = spec["spec"]["hard"].as_object() else {
            continue;
        };
        let mut unspecified = Vec::new();
        let mut exceeded = Vec::new();
        for (tracked, limit) in hard {
            let Some(limit) = limit.as_str().and_then(parse_quantity) else {
                continue;
            };
            match charge(&target.resource, object, tracked) {
                Ok(None) => {}
                Err(container) => unspecified.push(format!("{tracked} for: {container}")),
                Ok(Some(requested)) => {
                    let used = used(store, namespace, tracked);
                    if used + requested > limit + 1e-9 {
                        exceeded.push((tracked.clone(), requested, used, limit));
                    }
                }
            }
        }
        if !unspecified.is_empty() {
            return Some(forbidden(format!(
                "failed quota: {quota}: must specify {}",
                unspecified.join("; ")
            )));
        }
        if !exceeded.is_empty() {
            let list = |pick: fn(&(String, f64, f64, f64)) -> f64| {
                exceeded
                    .iter()
                    .map(|e| format!("{}={}", e.0, format_quantity(pick(e))))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Some(forbidden(format!(
                "exceeded quota: {quota}, requested: {}, used: {}, limited: {}",
                list(|e| e.1),
                list(|e| e.2),
                list(|e| e.3)
            )));
        }
    }
    None
}

/// Writes each quota's `status.hard` and `status.used` as the quota controller does, changing
/// an object (and its `resourceVersion`) only when its status changed.
pub(super) fn refresh(store: &mut Store) {
    if store.quotas_counted_at == store.version {
        return;
    }
    let quotas: Vec<(String, String, String)> = store
        .objects
        .keys()
        .filter(|(resource, _, _)| resource == "resourcequotas")
        .cloned()
        .collect();
    for key in quotas {
        let hard = store.objects[&key]["spec"]["hard"].clone();
        let used: Map<String, Value> = hard
            .as_object()
            .into_iter()
            .flatten()
            .map(|(tracked, _)| (tracked.clone(), json!(format_quantity(used(store, &key.1, tracked)))))
            .collect();
        let status = json!({"hard": hard, "used": used});
        if store.objects[&key].get("status") != Some(&status) {
            store.version += 1;
            let version = store.version.to_string();
            let quota = store.objects.get_mut(&key).expect("listed above");
            quota["status"] = status;
            quota["metadata"]["resourceVersion"] = json!(version);
        }
    }
    store.quotas_counted_at = store.version;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_the_api_server_reads_them() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1.5Gi"), Some(1.5 * 1024f64.powi(3)));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Qi"), None);
        assert_eq!(format_quantity(0.5), "500m");
        assert_eq!(format_quantity(8.0 * 1024f64.powi(3)), "8Gi");
        assert_eq!(format_quantity(2.0), "2");
    }

    #[test]
    fn a_pod_is_charged_its_containers_or_its_largest_init_container() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "install", "resources": {"requests": {"cpu": "1"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "500m"}}},
            ],
        }});
        assert_eq!(charge("pods", &pod, "requests.cpu"), Ok(Some(1.0)));
        assert_eq!(charge("pods", &pod, "cpu"), Ok(Some(1.0)));
        assert_eq!(charge("pods", &pod, "limits.cpu"), Err("a".into()));
        assert_eq!(charge("pods", &pod, "pods"), Ok(Some(1.0)));
        assert_eq!(charge("configmaps", &pod, "requests.cpu"), Ok(None));
        assert_eq!(charge("configmaps", &pod, "count/configmaps"), Ok(Some(1.0)));
    }
}
