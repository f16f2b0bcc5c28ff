//! What a spawn does with a caller's server it found, decided from what it read: a pure
//! function, tested as a table of cases without a cluster. [`spawner`](super::spawner) reads,
//! asks [`plan`], and carries the plan out.
//!
//! A spawn that finds no server (no claim, or a namespace just made) creates generation 1; of
//! concurrent ones the one that creates the claim wins, and the others plan against what it made.

use super::claim::Claim;
use super::status::Stage;

/// What a spawn did with the caller's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawned {
    Created,
    Reused,
    Replaced,
}

/// What to do with the server of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnPlan {
    /// It runs these requirements: wait for its pod.
    Reuse,
    /// It runs these requirements but its pod is gone (evicted, deleted by hand): make the pod
    /// of the same generation again.
    Remake,
    /// It runs other requirements and the caller did not ask to replace it: 409.
    Refuse,
    /// Write `generation` into the claim and start its server: a terminated server's claim
    /// starts anew (`Created`), anything else is `Replaced`.
    Replace { outcome: Spawned, generation: u64 },
}

/// What to do with `current`, whose pod is there or not, at `stage` (its view's), for a spawn of
/// requirements of `digest`, `force`d or not. A failed server, or one whose pod is going, is
/// replaced without asking.
pub fn plan(current: &Claim, pod_present: bool, stage: Stage, digest: &str, force: bool) -> SpawnPlan {
    let next = current.generation + 1;
    if current.terminated {
        return SpawnPlan::Replace {
            outcome: Spawned::Created,
            generation: next,
        };
    }
    let usable = !matches!(stage, Stage::Failed | Stage::Terminating);
    match (usable && !force, current.digest == digest) {
        (true, true) if pod_present => SpawnPlan::Reuse,
        (true, true) => SpawnPlan::Remake,
        (true, false) => SpawnPlan::Refuse,
        (false, _) => SpawnPlan::Replace {
            outcome: Spawned::Replaced,
            generation: next,
        },
    }
}

/// The generations of the pods a spawn should remove: those older than the claim's, left by a
/// spawn that came too late and could not remove its pod. Pods already going are left to go.
pub fn stale_generations<'a>(pods: impl IntoIterator<Item = (Option<&'a str>, bool)>, current: u64) -> Vec<u64> {
    pods.into_iter()
        .filter(|(_, deleting)| !deleting)
        .filter_map(|(generation, _)| generation?.parse().ok())
        .filter(|generation| *generation < current)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(generation: u64, digest: &str, terminated: bool) -> Claim {
        Claim {
            sub: Some("user-001".into()),
            username: None,
            digest: digest.into(),
            generation,
            python: "3.11".into(),
            requirements: vec!["python==3.11".into()],
            created: None,
            resource_version: Some("7".into()),
            failure: None,
            failed_at: None,
            terminated,
            terminated_at: None,
            idle_since: None,
        }
    }

    #[test]
    fn a_spawn_plans_from_what_it_found() {
        use SpawnPlan::*;
        use Spawned::{Created, Replaced};
        let replace = |outcome, generation| Replace { outcome, generation };
        // (terminated, pod present, stage, same requirements, force) → plan
        let cases = [
            ((false, true, Stage::Ready, true, false), Reuse),
            ((false, true, Stage::Building, true, false), Reuse),
            ((false, true, Stage::Pending, true, false), Reuse),
            ((false, false, Stage::Pending, true, false), Remake),
            ((false, true, Stage::Ready, false, false), Refuse),
            ((false, false, Stage::Starting, false, false), Refuse),
            ((false, true, Stage::Ready, true, true), replace(Replaced, 5)),
            ((false, true, Stage::Ready, false, true), replace(Replaced, 5)),
            ((false, true, Stage::Failed, true, false), replace(Replaced, 5)),
            ((false, true, Stage::Failed, false, false), replace(Replaced, 5)),
            ((false, true, Stage::Terminating, true, false), replace(Replaced, 5)),
            ((false, false, Stage::Terminating, false, false), replace(Replaced, 5)),
            ((true, false, Stage::Terminating, true, false), replace(Created, 5)),
            ((true, false, Stage::Ready, false, false), replace(Created, 5)),
            ((true, true, Stage::Ready, true, true), replace(Created, 5)),
        ];
        for ((terminated, pod, stage, same, force), expected) in cases {
            let current = claim(4, "abc", terminated);
            let digest = if same { "abc" } else { "def" };
            assert_eq!(
                plan(&current, pod, stage, digest, force),
                expected,
                "terminated {terminated}, pod {pod}, {stage:?}, same {same}, force {force}"
            );
        }
    }

    #[test]
    fn only_older_pods_not_already_going_are_stale() {
        let pods = [
            (Some("1"), false),
            (Some("2"), true),
            (Some("3"), false),
            (Some("4"), false),
            (Some("5"), false),
            (Some("x"), false),
            (None, false),
        ];
        assert_eq!(stale_generations(pods, 4), [1, 3]);
        assert_eq!(stale_generations([], 4), Vec::<u64>::new());
    }
}
