//! Validated identities kept per Lambda container, keyed by a SHA-256 of the token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::claims::is_expired;
use super::{Identity, IdentityError};

/// How long a rejected token is remembered: long enough to absorb a burst of retries, short
/// enough that a fixed identity provider is asked again soon.
const REJECTION_TTL: Duration = Duration::from_secs(5);

type Key = [u8; 32];

struct Entry {
    result: Result<Identity, String>,
    until: SystemTime,
}

/// Bounded, time-limited cache. Identities live at most `ttl` and never past the token's
/// expiry; rejections live a few seconds; an unavailable provider is never cached.
pub struct IdentityCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl IdentityCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn key(token: &str) -> Key {
        Sha256::digest(token.as_bytes()).into()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &Key, now: SystemTime) -> Option<Result<Identity, IdentityError>> {
        let mut entries = self.entries.lock().expect("cache lock");
        let entry = entries.get(key)?;
        let live = entry.until > now && entry.result.as_ref().map_or(true, |id| !is_expired(id, now));
        if !live {
            entries.remove(key);
            return None;
        }
        Some(entry.result.clone().map_err(IdentityError::Invalid))
    }

    pub fn put(&self, key: Key, result: &Result<Identity, IdentityError>, now: SystemTime) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let (result, until) = match result {
            Ok(identity) => {
                let until = now + self.ttl;
                (
                    Ok(identity.clone()),
                    identity.expires_at.map_or(until, |exp| exp.min(until)),
                )
            }
            Err(IdentityError::Invalid(reason)) => (Err(reason.clone()), now + REJECTION_TTL.min(self.ttl)),
            Err(IdentityError::Unavailable(_)) => return,
        };
        if until <= now {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.capacity
                && let Some(soonest) = entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k)
            {
                entries.remove(&soonest);
            }
        }
        entries.insert(key, Entry { result, until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: Option<SystemTime>) -> Identity {
        Identity {
            sub: "s".into(),
            username: "u".into(),
            roles: vec![],
            groups: vec![],
            client: None,
            expires_at,
        }
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;
    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(1_000 + secs)
    }

    #[test]
    fn identities_live_for_the_ttl() {
        let cache = IdentityCache::new(Duration::from_secs(60), 10);
        let key = IdentityCache::key("t");
        cache.put(key, &Ok(identity(None)), at(0));
        assert!(cache.get(&key, at(59)).unwrap().is_ok());
        assert!(cache.get(&key, at(60)).is_none());
    }

    #[test]
    fn never_past_the_token_expiry() {
        let cache = IdentityCache::new(Duration::from_secs(60), 10);
        let key = IdentityCache::key("t");
        cache.put(key, &Ok(identity(Some(at(10)))), at(0));
        assert!(cache.get(&key, at(9)).is_some());
        assert!(cache.get(&key, at(10)).is_none());
        cache.put(key, &Ok(identity(Some(at(5)))), at(6));
        assert!(
            cache.get(&key, at(6)).is_none(),
            "an already expired identity is not stored"
        );
    }

    #[test]
    fn rejections_are_short_and_outages_are_not_kept() {
        let cache = IdentityCache::new(Duration::from_secs(60), 10);
        let (bad, down) = (IdentityCache::key("bad"), IdentityCache::key("down"));
        cache.put(bad, &Err(IdentityError::Invalid("expired".into())), at(0));
        cache.put(down, &Err(IdentityError::Unavailable("timeout".into())), at(0));
        assert_eq!(
            cache.get(&bad, at(4)),
            Some(Err(IdentityError::Invalid("expired".into())))
        );
        assert!(cache.get(&bad, at(5)).is_none());
        assert!(cache.get(&down, at(0)).is_none());
    }

    #[test]
    fn bounded_in_size() {
        let cache = IdentityCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.put(
                IdentityCache::key(&i.to_string()),
                &Ok(identity(Some(at(100 + i)))),
                at(0),
            );
        }
        assert_eq!(cache.len(), 3);
        assert!(
            cache.get(&IdentityCache::key("9"), at(1)).is_some(),
            "the newest entries stay"
        );
    }

    #[test]
    fn zero_ttl_turns_it_off() {
        let cache = IdentityCache::new(Duration::ZERO, 10);
        cache.put(IdentityCache::key("t"), &Ok(identity(None)), at(0));
        assert!(cache.is_empty());
    }
}
