//! The cost model a job's pricing section selects.

use std::sync::Arc;

use siren_crds::{PricingModel, PricingSpec};
use siren_scheduler::{ClusterPricing, CostModel, LambdaPricing, MB_PER_VCPU};

pub fn cost_model(pricing: &PricingSpec) -> Arc<dyn CostModel> {
    match pricing.model {
        PricingModel::LambdaX86 => Arc::new(LambdaPricing::X86),
        PricingModel::LambdaArm => Arc::new(LambdaPricing::ARM),
        PricingModel::Cluster => Arc::new(ClusterPricing {
            vcpu_second_usd: pricing.vcpu_second_usd,
            gb_second_usd: pricing.gb_second_usd,
            mb_per_vcpu: MB_PER_VCPU,
        }),
    }
}
