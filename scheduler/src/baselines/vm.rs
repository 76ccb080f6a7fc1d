//! The comparison the SIREN paper headlines: the same job on a cluster of k VMs of a fixed size,
//! billed by the hour (per second), at the same cost as the serverless run.
//!
//! The VMs boot once, keep their data shard in memory after the first epoch, and sync parameters
//! through the same store as the functions do. They are billed for the whole wall-clock time,
//! including the wait for the slowest VM at the end of every epoch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::budget::PREDICTION_MARGIN;
use crate::profile::{JobProfile, PlatformProfile};
use crate::simulator::EpochModel;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmType {
    pub name: String,
    pub vcpus: f64,
    pub memory_mb: u32,
    pub hourly_usd: f64,
    pub boot_seconds: f64,
    /// Billed at least this long once started (EC2 Linux: 60 s).
    pub minimum_billed_seconds: f64,
}

impl VmType {
    /// An EC2 c5.xlarge on demand in us-east-1: 4 vCPUs, 8 GiB, $0.17 per hour; ~45 s to boot
    /// and join.
    pub fn c5_xlarge() -> Self {
        Self {
            name: "c5.xlarge".to_string(),
            vcpus: 4.0,
            memory_mb: 8192,
            hourly_usd: 0.17,
            boot_seconds: 45.0,
            minimum_billed_seconds: 60.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VmRun {
    pub vms: u32,
    pub time_to_target: Option<f64>,
    pub seconds: f64,
    pub cost_usd: f64,
}

fn cost(vm: &VmType, vms: u32, seconds: f64) -> f64 {
    f64::from(vms) * vm.hourly_usd / 3600.0 * seconds.max(vm.minimum_billed_seconds)
}

/// One job on `vms` VMs, stopping when the target is reached or the budget can't pay for another
/// epoch at the last epoch's length with the usual margin.
pub fn run_vm_cluster(
    job: &JobProfile,
    platform: &PlatformProfile,
    vm: &VmType,
    vms: u32,
    target: f64,
    budget_usd: f64,
    seed: u64,
) -> VmRun {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let model = EpochModel::new(job, platform);
    let speed = model.speed_for(vm.vcpus, 1);
    let times = model.function_times_for(vms, speed, 0.0);
    let load = platform.store.latency_seconds
        + job.samples_per_epoch as f64 / f64::from(vms.max(1)) * job.data_bytes_per_sample
            / model.bandwidth(vms);
    let curve = &job.curve;
    let stragglers = &platform.stragglers;
    let (mut seconds, mut progress) = (vm.boot_seconds, 0.0);
    let mut last_epoch: Option<f64> = None;
    for epoch in 0..job.max_epochs {
        if let Some(last) = last_epoch
            && cost(vm, vms, seconds + last * PREDICTION_MARGIN) > budget_usd
        {
            break;
        }
        let io = if epoch == 0 {
            times.io_seconds
        } else {
            times.io_seconds - load
        };
        let mut slowest: f64 = 0.0;
        for _ in 0..vms {
            let z: f64 = rng.sample(StandardNormal);
            // A VM's own noise is smaller than a shared function host's.
            let straggle = (0.5 * stragglers.sigma * z.abs())
                .exp()
                .min(stragglers.max_factor);
            slowest = slowest.max(io + times.compute_seconds * straggle);
        }
        let epoch_seconds = slowest + platform.epoch_overhead_seconds;
        if cost(vm, vms, seconds + epoch_seconds) > budget_usd {
            // Stopping just before an epoch that would overrun is more than a real cluster could
            // know; it only flatters the VMs. If not even one epoch fits, they are never started.
            if epoch == 0 {
                return VmRun {
                    vms,
                    time_to_target: None,
                    seconds: 0.0,
                    cost_usd: 0.0,
                };
            }
            break;
        }
        seconds += epoch_seconds;
        last_epoch = Some(epoch_seconds);
        progress += curve.epoch_progress(vms, progress);
        let noise: f64 = rng.sample(StandardNormal);
        if curve.accuracy_at(progress) + curve.accuracy_noise * noise >= target {
            return VmRun {
                vms,
                time_to_target: Some(seconds),
                seconds,
                cost_usd: cost(vm, vms, seconds),
            };
        }
    }
    VmRun {
        vms,
        time_to_target: None,
        seconds,
        cost_usd: cost(vm, vms, seconds),
    }
}

/// The fastest cluster size among `sizes` that reaches the target within the budget.
pub fn best_vm_cluster(
    job: &JobProfile,
    platform: &PlatformProfile,
    vm: &VmType,
    sizes: &[u32],
    target: f64,
    budget_usd: f64,
    seed: u64,
) -> Option<VmRun> {
    sizes
        .iter()
        .map(|&k| run_vm_cluster(job, platform, vm, k, target, budget_usd, seed))
        .filter(|run| run.time_to_target.is_some())
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_pays_for_its_wall_clock_time_and_never_more_than_the_budget() {
        let job = JobProfile::fashion_mnist_mlp();
        let platform = PlatformProfile::lambda_default();
        let vm = VmType::c5_xlarge();
        let run = run_vm_cluster(&job, &platform, &vm, 2, 0.85, 1.0, 1);
        let seconds = run.time_to_target.expect("reaches with a generous budget");
        assert!((run.cost_usd - 2.0 * 0.17 / 3600.0 * seconds).abs() < 1e-12);
        let tight = run_vm_cluster(&job, &platform, &vm, 8, 0.85, 0.01, 1);
        assert!(tight.cost_usd <= 0.01 && tight.time_to_target.is_none());
        let best = best_vm_cluster(&job, &platform, &vm, &[1, 2, 4, 8], 0.85, 1.0, 1)
            .expect("some size reaches");
        assert!(best.seconds <= seconds);
    }
}
