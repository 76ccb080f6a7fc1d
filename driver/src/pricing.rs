//! The prices a job's pricing section selects: one value serves the driver's billing and the
//! scheduler's predictions, so the two can never disagree.

use std::sync::Arc;

use siren_crds::{PricingModel, PricingSpec};
use siren_scheduler::{ClusterPricing, CostModel, MB_PER_VCPU, Pricing};

pub fn pricing_of(spec: &PricingSpec) -> Pricing {
    match spec.model {
        PricingModel::LambdaX86 => Pricing::LambdaX86,
        PricingModel::LambdaArm => Pricing::LambdaArm,
        PricingModel::Cluster => Pricing::Cluster(ClusterPricing::new(
            spec.vcpu_second_usd,
            spec.gb_second_usd,
            MB_PER_VCPU,
        )),
    }
}

pub fn cost_model(spec: &PricingSpec) -> Arc<dyn CostModel> {
    Arc::new(pricing_of(spec))
}
