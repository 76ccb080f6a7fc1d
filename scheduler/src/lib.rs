//! Siren's scheduling decisions, kept free of I/O so they compile fast and test in isolation:
//! what function time costs, a simulator of serverless training, the DRL agent that picks how many
//! functions of which memory size run each epoch, the baselines it is measured against, and the
//! evaluation that measures it.

pub mod baselines;
pub mod budget;
pub mod cost;
pub mod drl;
pub mod episode;
pub mod eval;
pub mod features;
pub mod fit;
pub mod forecast;
pub mod gate;
pub mod grid;
pub mod mask;
pub mod nn;
pub mod offline_training;
pub mod policy;
pub mod profile;
pub mod profile_fit;
pub mod record;
pub mod simjob;
pub mod simulator;
pub mod stats;

pub use budget::{BudgetCheck, EpochCostEstimate, PREDICTION_MARGIN, check_budget};
pub use cost::{ClusterPricing, CostModel, LambdaPricing, MB_PER_VCPU, Pricing};
pub use drl::{DrlScheduler, LearningConfig, Policy, PolicyError, Trajectory, UpdateStats};
pub use episode::{EpisodeResult, EpisodeSpec, run_episode};
pub use eval::{EvalConfig, EvalReport, evaluate};
pub use fit::{CurveFit, FitError, ObservedCurve, fit_loss_curve};
pub use forecast::{Basis, Forecast, JobState, forecast};
pub use gate::{Gate, Limits, StopReason, open_epoch};
pub use grid::ActionGrid;
pub use mask::{PROFILE_MARGIN, affordable, pessimistic_cost};
pub use offline_training::{TrainingConfig, TrainingReport, train_offline};
pub use policy::{Action, Decision, Observation, Scheduler, StaticScheduler};
pub use profile::{
    CalibratedProfile, ColdStart, JobProfile, LossCurve, PlatformProfile, ProfileError,
    StoreProfile, Stragglers,
};
pub use record::EpochRecord;
pub use simjob::{SimJob, SimJobConfig};
pub use simulator::{EpochModel, EpochOutcome, Simulator, WarmPool};
