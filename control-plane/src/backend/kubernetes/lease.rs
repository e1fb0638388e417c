//! A `coordination.k8s.io` Lease as the controllers' claim, the way client-go's leader election
//! uses one: the holder renews `renewTime`; another takes the Lease once `renewTime` plus
//! `leaseDurationSeconds` has passed. Every write carries the `resourceVersion` it read, so of
//! two controllers that race for the Lease the API server lets one win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

/// What a controller does with the Lease it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// There is none: create it.
    Create,
    /// This controller holds it: renew it.
    Renew,
    /// Another held it and let it lapse (or gave it up): take it.
    TakeOver,
    /// Another holds it.
    Wait,
}

/// What `identity` does with `lease` at `now`. Pure.
pub fn claim(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Claim {
    let Some(spec) = lease else { return Claim::Create };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Claim::Renew,
        None | Some("") => Claim::TakeOver,
        Some(_) => {
            let lapses = spec.renew_time.as_ref().and_then(|t| {
                t.0.checked_add(SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into()))
                    .ok()
            });
            match lapses {
                Some(at) if at > now => Claim::Wait,
                _ => Claim::TakeOver,
            }
        }
    }
}

/// The controllers' Lease in one namespace, claimed as `identity`.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// Takes or renews the Lease; whether this controller holds it now. Losing a race (409) is
    /// not an error: another controller holds it.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = claim(current.as_ref().and_then(|l| l.spec.as_ref()), &self.identity, now);
        let written = match (decision, current) {
            (Claim::Wait, _) => return Ok(false),
            (Claim::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(self.spec(None, now)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (_, None) => return Ok(false),
            (decision, Some(mut lease)) => {
                let old = lease.spec.take();
                let taken = (decision == Claim::TakeOver).then_some(old.as_ref());
                lease.spec = Some(match taken {
                    Some(old) => self.spec(old, now),
                    None => LeaseSpec { renew_time: Some(MicroTime(now)), ..old.unwrap_or_default() },
                });
                // `lease` keeps the resourceVersion it was read with.
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, if this controller holds it, so that another takes it at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
    }

    pub fn describe(&self) -> String {
        format!("Lease {}/{} as {}", self.api.namespace().unwrap_or_default(), self.name, self.identity)
    }

    /// The spec of a Lease this controller takes now (from `previous`, if any).
    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.map_or(0, |p| p.lease_transitions.unwrap_or(0).saturating_add(1)),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed_secs_ago: i64) -> LeaseSpec {
        let now = Timestamp::from_second(1_000_000).unwrap();
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_when_missing_released_or_lapsed_and_renewed_by_its_holder() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(claim(None, "a", now), Claim::Create);
        assert_eq!(claim(Some(&held("a", 60)), "a", now), Claim::Renew, "even late: nobody took it");
        assert_eq!(claim(Some(&held("b", 5)), "a", now), Claim::Wait);
        assert_eq!(claim(Some(&held("b", 16)), "a", now), Claim::TakeOver);
        let released = LeaseSpec { holder_identity: None, ..held("b", 1) };
        assert_eq!(claim(Some(&released), "a", now), Claim::TakeOver);
        let never_renewed = LeaseSpec { renew_time: None, ..held("b", 0) };
        assert_eq!(claim(Some(&never_renewed), "a", now), Claim::TakeOver);
    }
}
