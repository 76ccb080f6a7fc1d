//! What function time costs: AWS Lambda's published prices, or in-cluster resource rates.

use serde::{Deserialize, Serialize};

/// Lambda gives one full vCPU at 1,769 MB and scales CPU linearly with memory.
pub const MB_PER_VCPU: f64 = 1769.0;
/// Lambda's CPU stops growing at six vCPUs (10,240 MB).
pub const MAX_LAMBDA_VCPUS: f64 = 6.0;
/// Smallest and largest memory sizes Lambda accepts.
pub const MIN_LAMBDA_MEMORY_MB: u32 = 128;
pub const MAX_LAMBDA_MEMORY_MB: u32 = 10_240;
/// Lambda rounds every invocation's duration up to a whole millisecond.
pub const LAMBDA_BILLING_SECONDS: f64 = 0.001;

pub trait CostModel: Send + Sync {
    /// vCPUs a function of this memory size gets.
    fn vcpus(&self, memory_mb: u32) -> f64;
    /// Cost of one invocation that ran for `seconds` with `memory_mb`.
    fn invocation_cost(&self, memory_mb: u32, seconds: f64) -> f64;
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LambdaPricing {
    pub gb_second_usd: f64,
    pub request_usd: f64,
}

impl LambdaPricing {
    pub const X86: LambdaPricing = LambdaPricing {
        gb_second_usd: 0.000_016_666_7,
        request_usd: 0.20 / 1_000_000.0,
    };
    pub const ARM: LambdaPricing = LambdaPricing {
        gb_second_usd: 0.000_013_333_4,
        request_usd: 0.20 / 1_000_000.0,
    };
}

impl CostModel for LambdaPricing {
    fn vcpus(&self, memory_mb: u32) -> f64 {
        (f64::from(memory_mb) / MB_PER_VCPU).min(MAX_LAMBDA_VCPUS)
    }

    /// Billed in 1 ms increments, rounded up.
    fn invocation_cost(&self, memory_mb: u32, seconds: f64) -> f64 {
        let billed_seconds = (seconds.max(0.0) * 1000.0).ceil() / 1000.0;
        billed_seconds * f64::from(memory_mb) / 1024.0 * self.gb_second_usd + self.request_usd
    }
}

/// Pods billed for the CPU and memory they request; CPU follows memory at a fixed ratio so that one
/// memory knob serves both platforms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClusterPricing {
    pub vcpu_second_usd: f64,
    pub gb_second_usd: f64,
    pub mb_per_vcpu: f64,
}

impl ClusterPricing {
    pub fn new(vcpu_second_usd: f64, gb_second_usd: f64, mb_per_vcpu: f64) -> Self {
        Self {
            vcpu_second_usd,
            gb_second_usd,
            mb_per_vcpu,
        }
    }
}

impl CostModel for ClusterPricing {
    fn vcpus(&self, memory_mb: u32) -> f64 {
        f64::from(memory_mb) / self.mb_per_vcpu
    }

    fn invocation_cost(&self, memory_mb: u32, seconds: f64) -> f64 {
        let seconds = seconds.max(0.0);
        seconds
            * (self.vcpus(memory_mb) * self.vcpu_second_usd
                + f64::from(memory_mb) / 1024.0 * self.gb_second_usd)
    }
}

/// A price list that can be written in a profile file, for the simulator and the agent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Pricing {
    LambdaX86,
    LambdaArm,
    Lambda(LambdaPricing),
    Cluster(ClusterPricing),
}

impl Pricing {
    fn model(&self) -> &dyn CostModel {
        match self {
            Pricing::LambdaX86 => &LambdaPricing::X86,
            Pricing::LambdaArm => &LambdaPricing::ARM,
            Pricing::Lambda(pricing) => pricing,
            Pricing::Cluster(pricing) => pricing,
        }
    }
}

impl CostModel for Pricing {
    fn vcpus(&self, memory_mb: u32) -> f64 {
        self.model().vcpus(memory_mb)
    }

    fn invocation_cost(&self, memory_mb: u32, seconds: f64) -> f64 {
        self.model().invocation_cost(memory_mb, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_x86_matches_hand_computed_prices() {
        // 1,024 MB for exactly 1 s: one GB-second plus one request.
        let one = LambdaPricing::X86.invocation_cost(1024, 1.0);
        assert!(
            (one - (0.000_016_666_7 + 0.000_000_2)).abs() < 1e-15,
            "{one}"
        );
        // 1.0001 s bills 1.001 s (1 ms increments, rounded up); 2,048 MB is 2 GB.
        let rounded = LambdaPricing::X86.invocation_cost(2048, 1.0001);
        assert!((rounded - (1.001 * 2.0 * 0.000_016_666_7 + 0.000_000_2)).abs() < 1e-15);
        let arm = LambdaPricing::ARM.invocation_cost(512, 10.0);
        assert!((arm - (10.0 * 0.5 * 0.000_013_333_4 + 0.000_000_2)).abs() < 1e-15);
    }

    #[test]
    fn lambda_cpu_grows_with_memory_up_to_six() {
        assert!((LambdaPricing::X86.vcpus(1769) - 1.0).abs() < 1e-12);
        assert_eq!(LambdaPricing::X86.vcpus(10_240), 10_240.0 / 1769.0);
        assert!(LambdaPricing::X86.vcpus(10_240) <= 6.0);
        assert!((LambdaPricing::ARM.vcpus(884) - 884.0 / 1769.0).abs() < 1e-12);
    }

    #[test]
    fn lambda_bills_whole_milliseconds_and_requests() {
        // 128 MB for 1 ms: 0.125 GB x 0.001 s x price, plus $0.20 / 1e6.
        let tiny = LambdaPricing::X86.invocation_cost(128, 0.000_000_1);
        assert!((tiny - (0.001 * 0.125 * 0.000_016_666_7 + 0.000_000_2)).abs() < 1e-18);
        // A million zero-length invocations cost exactly the request fee.
        let requests: f64 = (0..1_000_000)
            .map(|_| LambdaPricing::ARM.invocation_cost(10_240, 0.0))
            .sum();
        assert!((requests - 0.20).abs() < 1e-9, "{requests}");
        // 10,240 MB for 60 s on x86: 600 GB-s = $0.01000002 + one request.
        let big = LambdaPricing::X86.invocation_cost(10_240, 60.0);
        assert!((big - (0.010_000_02 + 0.000_000_2)).abs() < 1e-12, "{big}");
    }

    #[test]
    fn pricing_enum_delegates_and_round_trips() {
        let cluster = Pricing::Cluster(ClusterPricing::new(0.00001, 0.000001, 2048.0));
        assert!((cluster.vcpus(4096) - 2.0).abs() < 1e-12);
        assert!(
            (cluster.invocation_cost(4096, 100.0) - 100.0 * (2.0 * 0.00001 + 4.0 * 0.000001)).abs()
                < 1e-15
        );
        assert_eq!(
            Pricing::LambdaArm.invocation_cost(1024, 2.0),
            LambdaPricing::ARM.invocation_cost(1024, 2.0)
        );
        for pricing in [
            Pricing::LambdaX86,
            cluster,
            Pricing::Lambda(LambdaPricing::ARM),
        ] {
            let json = serde_json::to_string(&pricing).expect("serialises");
            let back: Pricing = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, pricing);
        }
    }

    #[test]
    fn cluster_bills_cpu_and_memory() {
        let pricing = ClusterPricing {
            vcpu_second_usd: 0.01,
            gb_second_usd: 0.001,
            mb_per_vcpu: 2048.0,
        };
        let cost = pricing.invocation_cost(4096, 10.0);
        assert!(
            (cost - 10.0 * (2.0 * 0.01 + 4.0 * 0.001)).abs() < 1e-12,
            "{cost}"
        );
    }
}
