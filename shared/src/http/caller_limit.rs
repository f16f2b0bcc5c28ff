//! How often one caller may ask for something costly (a spawn): a token bucket per caller,
//! counted once the caller is authenticated, so that no one else's requests, and no
//! unauthenticated ones, use a caller's allowance.
//!
//! `per_minute` requests at once, then one more every `60 / per_minute` seconds. The buckets
//! live in the function's instance: with `C` instances of a function running, a caller gets at
//! most `C` times the allowance, and the gateway's limit on the route bounds every caller
//! together. At most [`MAX_CALLERS`] callers are tracked; past that, the one seen longest ago is
//! forgotten (a full bucket, which a forgotten caller gets back, is the most it would have
//! after a minute anyway).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Vars};

pub const MAX_CALLERS: usize = 10_000;

pub struct CallerLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl CallerLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `REXEC_SPAWNS_PER_MINUTE` (default 10): a caller's spawns in a minute.
    pub fn spawns(vars: &Vars) -> Result<Self, ConfigError> {
        let per_minute = vars.parse_or("REXEC_SPAWNS_PER_MINUTE", 10u32)?;
        if per_minute == 0 {
            return Err(ConfigError::new("REXEC_SPAWNS_PER_MINUTE", "must be more than 0"));
        }
        Ok(Self::new(per_minute))
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one of `caller`'s requests at `now`; when none is left, how long until one is
    /// (whole seconds, at least one).
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.per_minute);
        let rate = burst / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(caller)
            && buckets.len() >= MAX_CALLERS
            && let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone())
        {
            buckets.remove(&oldest);
        }
        let bucket = buckets
            .entry(caller.to_owned())
            .or_insert(Bucket { tokens: burst, at: now });
        let tokens = (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        *bucket = Bucket { tokens, at: now };
        if tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            // In whole seconds, rounded up, as Retry-After says it.
            Err(Duration::from_secs(((1.0 - tokens) / rate).ceil() as u64).max(Duration::from_secs(1)))
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_a_burst_then_one_more_per_interval_and_others_are_untouched() {
        let limit = CallerLimit::new(6);
        let start = Instant::now();
        for _ in 0..6 {
            assert_eq!(limit.take("alice", start), Ok(()));
        }
        let wait = limit.take("alice", start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10), "one more every 60 / 6 s");
        assert_eq!(limit.take("bob", start), Ok(()), "bob's allowance is his own");
        assert!(limit.take("alice", start + Duration::from_secs(9)).is_err());
        assert_eq!(limit.take("alice", start + Duration::from_secs(10)), Ok(()));
        assert!(limit.take("alice", start + Duration::from_secs(10)).is_err());
        // Idle for an hour: a full burst again, no more.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..7).filter(|_| limit.take("alice", later).is_ok()).count(), 6);
    }

    #[test]
    fn a_refusal_asks_for_at_least_a_second() {
        let limit = CallerLimit::new(600);
        let now = Instant::now();
        while limit.take("alice", now).is_ok() {}
        assert_eq!(limit.take("alice", now), Err(Duration::from_secs(1)));
    }

    #[test]
    fn the_callers_tracked_are_bounded_and_the_one_seen_longest_ago_goes_first() {
        let limit = CallerLimit::new(1);
        let start = Instant::now();
        for i in 0..MAX_CALLERS {
            limit
                .take(&format!("c{i}"), start + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(limit.tracked(), MAX_CALLERS);
        let now = start + Duration::from_secs(11);
        assert!(limit.take("c1", now).is_err(), "c1 is still counted");
        limit.take("newcomer", now).unwrap();
        assert_eq!(limit.tracked(), MAX_CALLERS);
        assert!(limit.take("c0", now).is_ok(), "c0, seen longest ago, was forgotten");
    }

    #[test]
    fn the_setting_is_read_and_checked() {
        let vars = |v: &str| Vars::from_pairs([("REXEC_SPAWNS_PER_MINUTE", v)]);
        assert_eq!(CallerLimit::spawns(&Vars::default()).unwrap().per_minute(), 10);
        assert_eq!(CallerLimit::spawns(&vars("30")).unwrap().per_minute(), 30);
        for bad in ["0", "-1", "many"] {
            assert_eq!(
                CallerLimit::spawns(&vars(bad)).err().unwrap().variable,
                "REXEC_SPAWNS_PER_MINUTE"
            );
        }
    }
}
