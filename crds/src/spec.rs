//! The `TrainingJob` spec: what to train, on what data, how, within which budget and where.
//!
//! Every struct denies unknown fields so that a misspelt key is an error rather than a silently
//! ignored setting; defaults are chosen so that the smallest useful manifest names only the model and
//! the dataset.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pod_template::FunctionPodTemplate;
use crate::status::TrainingJobStatus;
use crate::task::{FailureKind, TaskFailure};

pub const API_GROUP: &str = "siren.dev";
pub const API_VERSION: &str = "v1alpha1";
pub const KIND: &str = "TrainingJob";

/// A training run executed by a swarm of stateless functions that share a parameter store.
// Printer columns repeat `type_` values, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "siren.dev",
    version = "v1alpha1",
    kind = "TrainingJob",
    namespaced,
    shortname = "tj",
    category = "siren",
    status = "TrainingJobStatus",
    derive = "PartialEq",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.epoch"),
    printcolumn(name = "Accuracy", type_ = "number", json_path = ".status.accuracy"),
    printcolumn(name = "Cost", type_ = "number", json_path = ".status.costUsd"),
    printcolumn(name = "Functions", type_ = "integer", json_path = ".status.functions"),
    printcolumn(name = "Memory", type_ = "integer", json_path = ".status.memoryMb"),
    printcolumn(
        name = "Progress",
        type_ = "number",
        json_path = ".status.progress.percent"
    ),
    printcolumn(
        name = "ETA",
        type_ = "number",
        json_path = ".status.progress.etaSeconds"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingJobSpec {
    pub model: ModelSpec,
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub training: TrainingSpec,
    #[serde(default)]
    pub budget: BudgetSpec,
    #[serde(default)]
    pub scheduler: SchedulerSpec,
    #[serde(default)]
    pub backend: BackendSpec,
    #[serde(default)]
    pub store: StoreSpec,
    #[serde(default)]
    pub failure_policy: FailurePolicySpec,
    /// Pauses the job after its current epoch; clearing it resumes from the last checkpoint.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Seconds the job may run, counted from `status.startTime`; past it the job ends `Failed`
    /// with reason `DeadlineExceeded` (as a Kubernetes Job does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
    /// Seconds after the job finished (`status.completionTime`) when the operator deletes it, and
    /// with it the job's store keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
    /// The controller that runs the job, as a Kubernetes Job's `spec.managedBy`: unset or
    /// `siren.dev/operator`, the Siren operator; anything else (such as MultiKueue's
    /// `kueue.x-k8s.io/multikueue`), another controller, and the Siren operator leaves the job
    /// alone. A job the operator has taken on stays its own whatever this becomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub managed_by: Option<String>,
}

/// `spec.managedBy` of the jobs the Siren operator runs (also when it is unset).
pub const MANAGED_BY_SIREN: &str = "siren.dev/operator";

impl TrainingJobSpec {
    /// Whether the Siren operator runs the job (rather than the controller `managedBy` names).
    pub fn is_managed_by_siren(&self) -> bool {
        self.managed_by
            .as_deref()
            .is_none_or(|manager| manager == MANAGED_BY_SIREN)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ModelKind {
    /// Multinomial logistic regression (one linear layer).
    #[serde(rename = "logistic")]
    Logistic,
    /// Multi-layer perceptron with ReLU activations.
    #[serde(rename = "mlp")]
    Mlp,
    /// LeNet-5: conv 6@5x5 (pad 2), max-pool, conv 16@5x5, max-pool, fc 120, fc 84, fc classes.
    #[serde(rename = "lenet5")]
    Lenet5,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Logistic => "logistic",
            ModelKind::Mlp => "mlp",
            ModelKind::Lenet5 => "lenet5",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSpec {
    pub kind: ModelKind,
    /// Hidden layer widths of an MLP; only valid with `kind: mlp`. Defaults to [256, 128].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<u32>>,
}

pub const DEFAULT_MLP_HIDDEN: [u32; 2] = [256, 128];

impl ModelSpec {
    pub fn hidden_layers(&self) -> Vec<u32> {
        self.hidden
            .clone()
            .unwrap_or_else(|| DEFAULT_MLP_HIDDEN.to_vec())
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum BuiltinDataset {
    /// Zalando's Fashion-MNIST, from Debian's `dataset-fashion-mnist` package.
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
}

/// Where the data comes from: exactly one of `builtin`, `idx`, `csv`, `libsvm` or `synthetic`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinDataset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idx: Option<IdxSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libsvm: Option<LibsvmSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SyntheticSource>,
    /// Training samples per shard; tasks reference shards by index.
    #[serde(default = "default_shard_size")]
    #[schemars(range(min = 1, max = 1000000))]
    pub shard_size: u32,
    /// Use only the first N training samples (quick experiments and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_train_samples: Option<u32>,
    /// Use only the first N test samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_test_samples: Option<u32>,
}

fn default_shard_size() -> u32 {
    1000
}

impl DatasetSpec {
    /// Seeded synthetic data in shards of `shard_size` (benchmarks and tests).
    pub fn synthetic(source: SyntheticSource, shard_size: u32) -> Self {
        Self {
            builtin: None,
            idx: None,
            csv: None,
            libsvm: None,
            synthetic: Some(source),
            shard_size,
            max_train_samples: None,
            max_test_samples: None,
        }
    }
}

/// IDX files (the MNIST format), raw or gzip-compressed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdxSource {
    pub train_images: String,
    pub train_labels: String,
    pub test_images: String,
    pub test_labels: String,
}

/// CSV: one sample per row, an integer class label in `labelColumn`, every other column a feature.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CsvSource {
    pub train: String,
    /// Without a test file, `testFraction` of the training rows is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default)]
    pub label_column: u32,
    /// The first row names the columns and is skipped.
    #[serde(default)]
    pub header: bool,
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

/// LibSVM: `label index:value ...` with 1-based feature indices.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LibsvmSource {
    pub train: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// Number of features; defaults to the largest index seen in the training file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<u32>,
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
}

fn default_test_fraction() -> f64 {
    0.1
}

/// Seeded Gaussian class clusters, for scale tests without data files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyntheticSource {
    pub samples: u32,
    #[serde(default = "default_synthetic_test_samples")]
    pub test_samples: u32,
    pub features: u32,
    pub classes: u32,
    /// Standard deviation of the noise around each class centre (centres are unit-scale).
    #[serde(default = "default_synthetic_noise")]
    pub noise: f64,
    #[serde(default)]
    pub seed: u64,
}

fn default_synthetic_test_samples() -> u32 {
    1000
}
fn default_synthetic_noise() -> f64 {
    1.0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 65536))]
    pub batch_size: u32,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// The learning rate of epoch e (0-based) is `learningRate * lrDecay^e`.
    #[serde(default = "one")]
    pub lr_decay: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Local SGD steps (mini-batches) a function takes between a pull and a push.
    #[serde(default = "default_steps_per_push")]
    #[schemars(range(min = 1, max = 1000))]
    pub steps_per_push: u32,
    #[serde(default = "default_max_epochs")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_epochs: u32,
    /// Stop as soon as the test accuracy reaches this value (0-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_accuracy: Option<f64>,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_batch_size() -> u32 {
    64
}
fn default_learning_rate() -> f64 {
    0.01
}
fn one() -> f64 {
    1.0
}
fn default_momentum() -> f64 {
    0.9
}
fn default_steps_per_push() -> u32 {
    1
}
fn default_max_epochs() -> u32 {
    10
}
fn default_seed() -> u64 {
    42
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            learning_rate: default_learning_rate(),
            lr_decay: one(),
            momentum: default_momentum(),
            weight_decay: 0.0,
            steps_per_push: default_steps_per_push(),
            max_epochs: default_max_epochs(),
            target_accuracy: None,
            seed: default_seed(),
        }
    }
}

impl TrainingSpec {
    /// Learning rate for a 0-based epoch index.
    pub fn learning_rate_at(&self, epoch: u32) -> f64 {
        self.learning_rate * self.lr_decay.powi(epoch as i32)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetSpec {
    /// The job never starts an epoch whose predicted cost would take the total past this amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

/// What a failed task costs the job. The defaults are Siren's behaviour before the policy
/// existed: three attempts per task, and the first epoch that cannot finish fails the job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailurePolicySpec {
    /// Attempts per task, the first included: a task that fails is run again on another function
    /// until it has had this many. Retries are billed and never start when they could overrun
    /// the budget.
    #[serde(default = "default_attempts_per_task")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts_per_task: u32,
    /// Epochs that may fail (a task out of attempts) before the job does. A failed epoch is
    /// undone, the model going back to the last finished epoch, and run again; what it cost
    /// stays spent. `status.failedEpochs` counts them across restarts and suspensions.
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub failed_epochs_allowed: u32,
    /// Failures that end the job at once, neither retried nor run again in a new epoch:
    /// `functionError`, `timeout`, `unreachable`. A `rejected` task (an invalid payload, corrupt
    /// data, a refused signature) is always final.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_failures: Vec<FailureKind>,
}

fn default_attempts_per_task() -> u32 {
    3
}

impl Default for FailurePolicySpec {
    fn default() -> Self {
        Self {
            attempts_per_task: default_attempts_per_task(),
            failed_epochs_allowed: 0,
            final_failures: Vec::new(),
        }
    }
}

impl FailurePolicySpec {
    /// Whether `failure` ends the job at once.
    pub fn is_final(&self, failure: &TaskFailure) -> bool {
        !failure.retryable
            || failure.kind == FailureKind::Rejected
            || self.final_failures.contains(&failure.kind)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SchedulerPolicy {
    /// The same number of functions and memory size every epoch.
    #[default]
    #[serde(rename = "static")]
    Static,
    /// The deep-reinforcement-learning agent: functions and memory chosen before every epoch from
    /// the job's progress, time and budget; it never picks an epoch the budget cannot pay for.
    #[serde(rename = "drl")]
    Drl,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerSpec {
    #[serde(default)]
    pub policy: SchedulerPolicy,
    /// Functions per epoch (the static policy's choice).
    #[serde(default = "default_functions")]
    #[schemars(range(min = 1, max = 1000))]
    pub functions: u32,
    /// Memory per function in MB; CPU grows with it (1,769 MB is one vCPU).
    #[serde(default = "default_memory_mb")]
    #[schemars(range(min = 128, max = 10240))]
    pub memory_mb: u32,
    /// `drl` only: the policy to act with (JSON written by `siren scheduler train`), read where the
    /// driver runs. Unset: the policy learned from earlier jobs on this machine, else the shipped one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<String>,
    /// `drl` only: a profile written by `siren calibrate` (the job's compute per sample and the
    /// platform's store, cold starts and stragglers). Unset: measured briefly at the job's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_file: Option<String>,
    /// `drl` only: after the job, learn from its epochs and save the updated policy (to
    /// `policyFile` when set, else to the machine's learned policy).
    #[serde(default = "default_true")]
    pub online_learning: bool,
}

fn default_true() -> bool {
    true
}

fn default_functions() -> u32 {
    4
}
fn default_memory_mb() -> u32 {
    1769
}

impl Default for SchedulerSpec {
    fn default() -> Self {
        Self {
            policy: SchedulerPolicy::Static,
            functions: default_functions(),
            memory_mb: default_memory_mb(),
            policy_file: None,
            profile_file: None,
            online_learning: true,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackendKind {
    /// Functions run as threads of the driver's own process.
    #[default]
    #[serde(rename = "local")]
    Local,
    /// Functions are `siren-worker` processes on this machine, invoked over HTTP on loopback (as
    /// a Knative Service's pods are); the store must be redis or s3.
    #[serde(rename = "process")]
    Process,
    /// Functions are invocations of an AWS Lambda function (`backend.lambda`) running
    /// `siren-lambda`; the store must be s3 (or a redis the function can reach).
    #[serde(rename = "lambda")]
    Lambda,
    /// Functions are the pods of a Knative Service (`backend.knative`) that the operator creates in
    /// the job's namespace, one request per task; the store must be redis or s3.
    #[serde(rename = "knative")]
    Knative,
    /// Functions are the replicas of an OpenFaaS function (`backend.openfaas`) deployed and scaled
    /// through the gateway's REST API; the store must be redis or s3.
    #[serde(rename = "openfaas")]
    OpenFaas,
}

/// The Knative Service that runs the job's functions. The operator owns it: it creates it before
/// the first epoch, patches it whenever the scheduler changes the pool, and deletes it with the job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KnativeSpec {
    /// The worker image (`siren-worker`, built from docker/worker.Dockerfile).
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Name of the Knative Service, in the job's namespace. Default: `siren-` and the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// ServiceAccount of the function pods, e.g. one with an IAM role (IRSA) for an S3 store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// The OpenFaaS function that runs the job's tasks, managed through the gateway's REST API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenFaasSpec {
    /// The gateway's URL, e.g. `http://gateway.openfaas:8080`.
    #[schemars(length(min = 1, max = 512))]
    pub gateway: String,
    /// The worker image (`siren-worker`, built from docker/worker.Dockerfile).
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Name of the function. Default: `siren-` and the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    /// Namespace of the function; unset, the gateway's default (`openfaas-fn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A Secret in the job's namespace holding the gateway's basic-auth credentials under the keys
    /// `basic-auth-user` and `basic-auth-password` (as OpenFaaS's own `basic-auth` Secret does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Most replicas the installation runs of one function. OpenFaaS Community Edition stops at 5;
    /// raise it for OpenFaaS Pro. The scheduler never asks for more functions than this.
    #[serde(default = "default_openfaas_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: u32,
}

fn default_openfaas_max_replicas() -> u32 {
    5
}

/// The AWS Lambda function that runs the job's tasks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LambdaSpec {
    /// Name or ARN of a function deployed with the `siren-lambda` bundle. Siren changes its
    /// memory size between epochs, so give the job a function of its own.
    #[schemars(length(min = 1, max = 170))]
    pub function_name: String,
    /// The function's region; otherwise the environment's (`AWS_REGION`), else us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An endpoint instead of AWS's, such as a local emulator (`cargo lambda watch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSpec {
    #[serde(default)]
    pub kind: BackendKind,
    #[serde(default)]
    pub pricing: PricingSpec,
    /// A task still running after this many seconds is abandoned and retried on another function
    /// (Lambda's own limit is 900).
    #[serde(default = "default_task_timeout_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub task_timeout_seconds: u32,
    /// Once the rest of an epoch is done, a task still running this many times the median task's
    /// duration is dispatched again on an idle function; whichever answers first counts.
    #[serde(default = "default_straggler_factor")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub straggler_factor: f64,
    /// Required by the lambda backend: which function to invoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaSpec>,
    /// Required by the knative backend: the Service to run functions in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knative: Option<KnativeSpec>,
    /// Required by the openfaas backend: the gateway and function to run tasks on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openfaas: Option<OpenFaasSpec>,
    /// Settings of the function pods, for the knative and openfaas backends: scheduling
    /// (`nodeSelector`, `tolerations`, `affinity`, `priorityClassName`), environment, image pull
    /// secrets, labels, annotations, ServiceAccount and extra resources. Knative applies them to
    /// the Service's revision template; OpenFaaS takes labels, annotations, `nodeSelector` (as
    /// constraints), plain `env` values and `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<FunctionPodTemplate>,
}

impl BackendSpec {
    /// The most functions the backend can run at once, when the platform caps it.
    pub fn max_functions(&self) -> Option<u32> {
        match (self.kind, &self.openfaas) {
            (BackendKind::OpenFaas, Some(openfaas)) => Some(openfaas.max_replicas),
            _ => None,
        }
    }
}

fn default_task_timeout_seconds() -> u32 {
    900
}

fn default_straggler_factor() -> f64 {
    3.0
}

impl Default for BackendSpec {
    fn default() -> Self {
        Self {
            kind: BackendKind::default(),
            pricing: PricingSpec::default(),
            task_timeout_seconds: default_task_timeout_seconds(),
            straggler_factor: default_straggler_factor(),
            lambda: None,
            knative: None,
            openfaas: None,
            pod_template: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PricingModel {
    /// AWS Lambda on x86: $0.0000166667 per GB-second plus $0.20 per million requests.
    #[default]
    #[serde(rename = "lambda-x86")]
    LambdaX86,
    /// AWS Lambda on Arm: $0.0000133334 per GB-second plus $0.20 per million requests.
    #[serde(rename = "lambda-arm")]
    LambdaArm,
    /// In-cluster pods: requested vCPU-seconds and GB-seconds at the rates given here.
    #[serde(rename = "cluster")]
    Cluster,
}

/// How function time turns into money. Local runs are priced as if they ran on Lambda unless told
/// otherwise, so that budgets mean the same thing on a laptop and in production.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PricingSpec {
    #[serde(default)]
    pub model: PricingModel,
    /// Price of one requested vCPU for one second (`cluster` pricing only).
    #[serde(default = "default_vcpu_second_usd")]
    pub vcpu_second_usd: f64,
    /// Price of one requested GB of memory for one second (`cluster` pricing only).
    #[serde(default = "default_gb_second_usd")]
    pub gb_second_usd: f64,
}

// An m6i.large-like on-demand price split between its 2 vCPUs and 8 GiB.
fn default_vcpu_second_usd() -> f64 {
    0.000_009
}
fn default_gb_second_usd() -> f64 {
    0.000_001_2
}

impl Default for PricingSpec {
    fn default() -> Self {
        Self {
            model: PricingModel::default(),
            vcpu_second_usd: default_vcpu_second_usd(),
            gb_second_usd: default_gb_second_usd(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StoreKind {
    /// The driver's own memory; functions must run in the same process (local backend).
    #[default]
    #[serde(rename = "memory")]
    Memory,
    /// A Redis server (`url`), for functions in a cluster or in other processes.
    #[serde(rename = "redis")]
    Redis,
    /// An S3 bucket (`url`), for AWS Lambda functions; any S3-compatible server through `endpoint`.
    #[serde(rename = "s3")]
    S3,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreSpec {
    #[serde(default)]
    pub kind: StoreKind,
    /// `redis://host:port[/db]`, or `rediss://` for TLS, for the Redis store; `s3://bucket[/prefix]`
    /// for the S3 store. Never credentials: those go in `credentialsSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Redis only: a Secret in the job's namespace holding the store's `username` (optional),
    /// `password` and `ca.crt` (optional, a PEM CA for `rediss://`). The operator reads it for its
    /// own connection; the functions get it from their environment (the Knative Service and the
    /// OpenFaaS function reference it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// S3 only: the endpoint of an S3-compatible server (MinIO, Ceph, moto, ...) instead of AWS;
    /// requests then use path-style addressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 only: the bucket's region; otherwise the environment's (`AWS_REGION`), else us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// PEM file of the certificate authority that signed the Redis server's certificate, when it is
    /// not one the system trusts (`rediss://` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Parameters per stored chunk; large models move in chunks of this many values.
    #[serde(default = "default_chunk_values")]
    #[schemars(range(min = 1024, max = 16777216))]
    pub chunk_values: u32,
}

pub(crate) fn default_chunk_values() -> u32 {
    256 * 1024
}

impl Default for StoreSpec {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            url: None,
            credentials_secret: None,
            endpoint: None,
            region: None,
            ca_file: None,
            chunk_values: default_chunk_values(),
        }
    }
}
