//! What function time costs: AWS Lambda's published prices, or in-cluster resource rates.

/// Lambda gives one full vCPU at 1,769 MB and scales CPU linearly with memory.
pub const MB_PER_VCPU: f64 = 1769.0;
/// Lambda's CPU stops growing at six vCPUs (10,240 MB).
pub const MAX_LAMBDA_VCPUS: f64 = 6.0;

pub trait CostModel: Send + Sync {
    /// vCPUs a function of this memory size gets.
    fn vcpus(&self, memory_mb: u32) -> f64;
    /// Cost of one invocation that ran for `seconds` with `memory_mb`.
    fn invocation_cost(&self, memory_mb: u32, seconds: f64) -> f64;
}

#[derive(Debug, Clone, Copy, PartialEq)]
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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterPricing {
    pub vcpu_second_usd: f64,
    pub gb_second_usd: f64,
    pub mb_per_vcpu: f64,
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
