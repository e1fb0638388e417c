//! Login throttling: after a few failed logins for one username, or many from one client
//! address, further attempts are refused for a while, so that passwords cannot be guessed at
//! the speed of the network. Pure but for the clock the caller passes in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins remembered this long.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Failures per username within the window before logins for it are refused.
pub const PER_USER: usize = 5;
/// Failures per client address within the window before its logins are refused.
pub const PER_ADDRESS: usize = 20;
/// Remembered keys beyond which the oldest are swept.
const SWEEP_AT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

/// Recent failed logins by username and by client address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl Throttle {
    /// `None` when a login may be tried now, else how long to wait.
    pub fn wait(&self, username: &str, address: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = None;
        for (key, limit) in keys(username, address) {
            let Some(times) = failures.get_mut(&key) else { continue };
            forget_old(times, now);
            if times.len() >= limit
                && let Some(oldest) = times.front()
            {
                let wait = (*oldest + WINDOW).saturating_duration_since(now);
                longest = longest.max(Some(wait));
            }
        }
        longest
    }

    /// Remembers a failed login.
    pub fn failed(&self, username: &str, address: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > SWEEP_AT {
            failures.retain(|_, times| {
                forget_old(times, now);
                !times.is_empty()
            });
        }
        for (key, limit) in keys(username, address) {
            let times = failures.entry(key).or_default();
            forget_old(times, now);
            times.push_back(now);
            while times.len() > limit {
                times.pop_front();
            }
        }
    }

    /// Forgets the failures of a username after a successful login.
    pub fn succeeded(&self, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Key::User(username.to_string()));
    }
}

fn keys(username: &str, address: Option<IpAddr>) -> impl Iterator<Item = (Key, usize)> {
    std::iter::once((Key::User(username.to_string()), PER_USER))
        .chain(address.map(|a| (Key::Address(a), PER_ADDRESS)))
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_is_locked_after_a_few_failures_and_freed_by_time_or_success() {
        let t = Throttle::default();
        let start = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_USER {
            assert_eq!(t.wait("ana", Some(ip), start), None);
            t.failed("ana", Some(ip), start);
        }
        assert_eq!(t.wait("ana", Some(ip), start), Some(WINDOW));
        assert_eq!(t.wait("bob", Some(ip), start), None, "another user from the same address may try");
        assert_eq!(t.wait("ana", Some(ip), start + WINDOW), None, "failures expire");
        t.succeeded("ana");
        assert_eq!(t.wait("ana", None, start), None);
    }

    #[test]
    fn an_address_guessing_many_usernames_is_locked() {
        let t = Throttle::default();
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..PER_ADDRESS {
            t.failed(&format!("user{i}"), Some(ip), now);
        }
        assert!(t.wait("someone-new", Some(ip), now).is_some());
        assert_eq!(t.wait("someone-new", Some("10.0.0.3".parse().unwrap()), now), None);
    }
}
