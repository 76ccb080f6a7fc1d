//! Leader election on a `coordination.k8s.io/v1` Lease, so that several operator replicas are
//! safe: only the replica holding the lease runs jobs. A replica that cannot renew the lease in
//! time stops (and its supervisor restarts it as a standby); the next holder resumes the jobs from
//! their checkpoints, exactly as after an operator restart.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    /// Unique per replica: the pod name, or host name and process id.
    pub identity: String,
    /// How long a holder that stopped renewing keeps the lease.
    pub duration: Duration,
}

impl LeaseConfig {
    /// Renewing three times per lease duration survives one or two slow API calls.
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let mut waiting_logged = false;
    loop {
        match bounded(try_hold(api, config), config).await {
            Ok(true) => {
                tracing::info!(lease = %config.name, identity = %config.identity, "leading");
                return Ok(());
            }
            Ok(false) if !waiting_logged => {
                tracing::info!(lease = %config.name, "another replica leads; standing by");
                waiting_logged = true;
            }
            Ok(false) => {}
            // A standby rides out an API outage instead of exiting.
            Err(error) => tracing::warn!(%error, "cannot read the lease; retrying"),
        }
        tokio::time::sleep(config.renew_every()).await;
    }
}

/// An API call that hangs must not outlive the lease it is meant to renew.
async fn bounded(
    call: impl std::future::Future<Output = Result<bool, kube::Error>>,
    config: &LeaseConfig,
) -> Result<bool, String> {
    match tokio::time::timeout(config.renew_every(), call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", config.renew_every())),
    }
}

/// Renews the lease; returns once it is lost (taken over, or not renewed within its duration).
pub async fn keep(api: &Api<Lease>, config: &LeaseConfig) -> String {
    // Counted from before the renewing call was sent, so this replica steps down before a
    // standby (which counts from the renewTime written) can take over; two thirds of the duration
    // leave a margin for clock skew between the two.
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every()).await;
        let sent = tokio::time::Instant::now();
        match bounded(try_hold(api, config), config).await {
            Ok(true) => renewed = sent,
            Ok(false) => return "another replica holds the lease".to_string(),
            Err(error) => {
                tracing::warn!(%error, "cannot renew the lease");
                if renewed.elapsed() >= config.duration * 2 / 3 {
                    return format!("the lease was not renewed in time: {error}");
                }
            }
        }
    }
}

/// Gives the lease up, if this replica holds it, so that a standby takes over at once instead of
/// waiting out the lease (a graceful shutdown).
pub async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, String> {
    let give_up = async {
        let Some(mut lease) = api.get_opt(&config.name).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        conflict_is_false(
            api.replace(&config.name, &PostParams::default(), &lease)
                .await,
        )
    };
    bounded(give_up, config).await
}

/// Takes or renews the lease if it is free, expired or ours. Writes carry the resource version
/// read, so of two replicas racing for an expired lease exactly one wins.
async fn try_hold(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let seconds = i32::try_from(config.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(current) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return conflict_is_false(api.create(&PostParams::default(), &lease).await);
    };
    let spec = current.spec.clone().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    if !ours && !expired(&spec, now) {
        return Ok(false);
    }
    let mut lease = current;
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(seconds),
        acquire_time: if ours {
            spec.acquire_time
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..spec
    });
    conflict_is_false(
        api.replace(&config.name, &PostParams::default(), &lease)
            .await,
    )
}

/// A lease without a holder or a renewal time is free; otherwise it expires a duration after
/// its last renewal.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let (Some(_), Some(renewed)) = (&spec.holder_identity, &spec.renew_time) else {
        return true;
    };
    let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1000;
    renewed.0.as_millisecond() + duration_ms < now.as_millisecond()
}

fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(renewed_ms_ago: i64, duration_seconds: i32) -> (LeaseSpec, Timestamp) {
        let now = Timestamp::now();
        let renewed = Timestamp::from_millisecond(now.as_millisecond() - renewed_ms_ago)
            .expect("a valid time");
        let spec = LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        };
        (spec, now)
    }

    #[test]
    fn a_lease_expires_one_duration_after_its_last_renewal() {
        let (fresh, now) = held(14_000, 15);
        assert!(!expired(&fresh, now));
        let (stale, now) = held(15_500, 15);
        assert!(expired(&stale, now));
    }

    #[test]
    fn a_lease_without_holder_or_renewal_is_free() {
        let (mut spec, now) = held(0, 15);
        spec.holder_identity = None;
        assert!(expired(&spec, now));
        let (mut spec, now) = held(0, 15);
        spec.renew_time = None;
        assert!(expired(&spec, now));
    }
}
