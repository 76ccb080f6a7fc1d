//! Models: logistic regression, MLP and LeNet-5 on burn's `flex` CPU backend, with their parameters
//! exchanged as one flat `f32` vector.

mod file;
mod lenet_kernel;
mod network;
mod params;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use siren_crds::{ModelKind, ModelSpec};
use thiserror::Error;

pub use file::{ModelFile, load_model, save_model};
pub use network::Network;
use params::{Flattener, GradientFlattener, Loader, ShapeCollector};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{model} cannot take this data: {reason}")]
    Incompatible { model: &'static str, reason: String },
    #[error("parameter vector has {found} values but the {model} model has {expected}")]
    ParamCount {
        model: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("training diverged: the loss became {0}")]
    Diverged(f32),
    #[error("model file {path}: {problem}")]
    File { path: String, problem: String },
}

/// A model as a shape: everything needed to build it, independent of any parameter values.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Architecture {
    pub kind: ModelKind,
    pub hidden: Vec<usize>,
    pub input_dim: usize,
    pub classes: usize,
}

impl Architecture {
    pub fn new(
        spec: &ModelSpec,
        input_dim: usize,
        classes: usize,
        image: Option<(usize, usize)>,
    ) -> Result<Self, ModelError> {
        let model = spec.kind.as_str();
        if input_dim == 0
            || input_dim > 1 << 24
            || classes == 0
            || classes > siren_data::MAX_CLASSES
        {
            return Err(ModelError::Incompatible {
                model,
                reason: format!("{input_dim} features and {classes} classes are out of range"),
            });
        }
        if spec.kind == ModelKind::Mlp
            && spec
                .hidden_layers()
                .iter()
                .any(|w| *w == 0 || *w > siren_crds::validate::MAX_LAYER_WIDTH)
        {
            return Err(ModelError::Incompatible {
                model,
                reason: "hidden layer widths must be between 1 and 65,536".into(),
            });
        }
        if spec.kind == ModelKind::Lenet5 {
            let square = matches!(image, Some((h, w)) if h == w) || image.is_none();
            let side = (input_dim as f64).sqrt() as usize;
            if !square || side * side != input_dim || side < 12 {
                return Err(ModelError::Incompatible {
                    model: "lenet5",
                    reason: format!(
                        "it needs square single-channel images of at least 12x12, got {input_dim} features{}",
                        image
                            .map(|(h, w)| format!(" ({h}x{w})"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        let hidden = match spec.kind {
            ModelKind::Mlp => spec.hidden_layers().iter().map(|w| *w as usize).collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            kind: spec.kind,
            hidden,
            input_dim,
            classes,
        })
    }

    pub fn build(&self, device: &Device) -> Network {
        match self.kind {
            ModelKind::Logistic => Network::Logistic(
                burn::nn::LinearConfig::new(self.input_dim, self.classes).init(device),
            ),
            ModelKind::Mlp => Network::Mlp(network::Mlp::new(
                self.input_dim,
                &self.hidden,
                self.classes,
                device,
            )),
            ModelKind::Lenet5 => {
                let side = (self.input_dim as f64).sqrt() as usize;
                Network::Lenet5(network::Lenet5::new(side, self.classes, device))
            }
        }
    }

    fn shapes(&self) -> Vec<Vec<usize>> {
        let mut shapes = ShapeCollector::default();
        self.build(&Device::flex()).visit(&mut shapes);
        shapes.0
    }

    pub fn param_count(&self) -> usize {
        self.shapes()
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// Seeded initial parameters, PyTorch's default scheme: weights and biases uniform in
    /// +-1/sqrt(fan_in). burn stores linear weights as [in, out] and conv weights as
    /// [out, in, kh, kw]; a bias takes the fan-in of the weight visited just before it.
    pub fn initial_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(self.param_count());
        let mut fan_in = 1usize;
        for shape in self.shapes() {
            fan_in = match shape.as_slice() {
                [rows, _] => *rows,
                [_, channels, kh, kw] => channels * kh * kw,
                _ => fan_in,
            };
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            let count: usize = shape.iter().product();
            match Uniform::new_inclusive(-bound, bound) {
                Ok(dist) => params.extend((0..count).map(|_| dist.sample(&mut rng))),
                Err(_) => params.resize(params.len() + count, 0.0),
            }
        }
        params
    }

    fn check_len(&self, found: usize, expected: usize) -> Result<(), ModelError> {
        if found == expected {
            Ok(())
        } else {
            Err(ModelError::ParamCount {
                model: self.kind.as_str(),
                expected,
                found,
            })
        }
    }
}

fn batch_tensors(
    features: &[f32],
    labels: &[u32],
    dim: usize,
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let batch = labels.len();
    let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [batch, dim]), device);
    let targets: Vec<i64> = labels.iter().map(|l| i64::from(*l)).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(targets, [batch]), device);
    (x, y)
}

fn scalar(tensor: Tensor<1>) -> f32 {
    tensor.into_data().iter::<f32>().next().unwrap_or(f32::NAN)
}

/// How gradients are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeEngine {
    /// A specialised kernel where the model has one (LeNet-5: im2col + GEMM), burn otherwise.
    #[default]
    Native,
    /// burn's autodiff on the `flex` backend for every model.
    Burn,
}

// One engine lives per function instance, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Burn { device: Device, network: Network },
    Lenet(lenet_kernel::LenetKernel),
}

impl Engine {
    /// The specialised kernel where the model has one and `Native` is asked for, burn on `device`
    /// (with or without autodiff) otherwise.
    fn new(architecture: &Architecture, engine: ComputeEngine, device: Device) -> Self {
        match (engine, architecture.kind) {
            (ComputeEngine::Native, ModelKind::Lenet5) => {
                let side = (architecture.input_dim as f64).sqrt() as usize;
                let kernel = lenet_kernel::LenetKernel::new(side, architecture.classes);
                debug_assert_eq!(kernel.param_count(), architecture.param_count());
                Engine::Lenet(kernel)
            }
            _ => {
                let network = architecture.build(&device);
                Engine::Burn { device, network }
            }
        }
    }
}

/// Computes gradients of the mean cross-entropy for given parameters; one per function instance,
/// reused across tasks (the warm path).
pub struct GradientComputer {
    architecture: Architecture,
    engine: Engine,
    param_count: usize,
}

impl GradientComputer {
    pub fn new(architecture: Architecture) -> Self {
        Self::with_engine(architecture, ComputeEngine::Native)
    }

    pub fn with_engine(architecture: Architecture, engine: ComputeEngine) -> Self {
        let param_count = architecture.param_count();
        let engine = Engine::new(&architecture, engine, Device::flex().autodiff());
        Self {
            architecture,
            engine,
            param_count,
        }
    }

    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    pub fn param_count(&self) -> usize {
        self.param_count
    }

    /// Mean loss of the batch and the gradient (written into `grad`, resized to the parameter count).
    pub fn gradient(
        &mut self,
        params: &[f32],
        features: &[f32],
        labels: &[u32],
        grad: &mut Vec<f32>,
    ) -> Result<f32, ModelError> {
        self.architecture
            .check_len(params.len(), self.param_count)?;
        if features.len() != labels.len() * self.architecture.input_dim {
            return Err(ModelError::Incompatible {
                model: self.architecture.kind.as_str(),
                reason: format!(
                    "a batch of {} labels came with {} feature values",
                    labels.len(),
                    features.len()
                ),
            });
        }
        let loss_value = match &mut self.engine {
            Engine::Lenet(kernel) => kernel.gradient(params, features, labels, grad),
            Engine::Burn { device, network } => {
                let loaded = network.clone().map(&mut Loader {
                    values: params,
                    offset: 0,
                    require_grad: true,
                });
                let (x, y) = batch_tensors(features, labels, self.architecture.input_dim, device);
                let logits = loaded.forward(x);
                let loss = CrossEntropyLossConfig::new()
                    .init(device)
                    .forward(logits, y);
                let gradients = loss.backward();
                let loss_value = scalar(loss);
                grad.clear();
                loaded.visit(&mut GradientFlattener {
                    grads: &gradients,
                    out: grad,
                });
                *network = loaded;
                loss_value
            }
        };
        if !loss_value.is_finite() {
            return Err(ModelError::Diverged(loss_value));
        }
        Ok(loss_value)
    }
}

/// Test loss and accuracy of a parameter vector.
pub struct Evaluator {
    architecture: Architecture,
    param_count: usize,
    engine: Engine,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
}

/// Summed cross-entropy and the number of correct predictions of a chunk of logits.
fn score(logits: &[f32], labels: &[u32], classes: usize) -> (f64, usize) {
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (row, label) in logits.chunks(classes).zip(labels) {
        let (best, max) =
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, v)| {
                    if *v > bv { (i, *v) } else { (bi, bv) }
                });
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        loss += f64::from(max + sum.ln() - row[*label as usize]);
        correct += usize::from(best == *label as usize);
    }
    (loss, correct)
}

impl Evaluator {
    pub fn new(architecture: Architecture) -> Self {
        Self::with_engine(architecture, ComputeEngine::Native)
    }

    pub fn with_engine(architecture: Architecture, engine: ComputeEngine) -> Self {
        let engine = Engine::new(&architecture, engine, Device::flex());
        Self {
            param_count: architecture.param_count(),
            architecture,
            engine,
        }
    }

    pub fn evaluate(
        &mut self,
        params: &[f32],
        features: &[f32],
        labels: &[u32],
    ) -> Result<Evaluation, ModelError> {
        self.architecture
            .check_len(params.len(), self.param_count)?;
        let dim = self.architecture.input_dim;
        let classes = self.architecture.classes;
        // Chunks bound the activation memory (LeNet's im2col buffers grow with the batch).
        const CHUNK: usize = 250;
        let mut loss_sum = 0.0f64;
        let mut correct = 0usize;
        match &mut self.engine {
            Engine::Lenet(kernel) => {
                for (xs, ys) in features.chunks(CHUNK * dim).zip(labels.chunks(CHUNK)) {
                    let (loss, right) = score(kernel.logits(params, xs, ys.len()), ys, classes);
                    loss_sum += loss;
                    correct += right;
                }
            }
            Engine::Burn { device, network } => {
                let loaded = network.clone().map(&mut Loader {
                    values: params,
                    offset: 0,
                    require_grad: false,
                });
                for (xs, ys) in features.chunks(CHUNK * dim).zip(labels.chunks(CHUNK)) {
                    let (x, _) = batch_tensors(xs, ys, dim, device);
                    let logits: Vec<f32> = loaded.forward(x).into_data().iter::<f32>().collect();
                    let (loss, right) = score(&logits, ys, classes);
                    loss_sum += loss;
                    correct += right;
                }
                *network = loaded;
            }
        }
        let n = labels.len().max(1) as f64;
        Ok(Evaluation {
            loss: loss_sum / n,
            accuracy: correct as f64 / n,
        })
    }
}

/// Reads the network's current parameters (used by tests and tools).
pub fn flatten(network: &Network) -> Vec<f32> {
    let mut out = Vec::new();
    network.visit(&mut Flattener(&mut out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: ModelKind) -> ModelSpec {
        ModelSpec { kind, hidden: None }
    }

    #[test]
    fn parameter_counts_match_the_architectures() {
        let logistic = Architecture::new(&spec(ModelKind::Logistic), 784, 10, None).expect("arch");
        assert_eq!(logistic.param_count(), 784 * 10 + 10);
        let mlp = Architecture::new(&spec(ModelKind::Mlp), 784, 10, None).expect("arch");
        assert_eq!(
            mlp.param_count(),
            784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
        );
        let lenet =
            Architecture::new(&spec(ModelKind::Lenet5), 784, 10, Some((28, 28))).expect("arch");
        assert_eq!(lenet.param_count(), 61_706);
    }

    #[test]
    fn lenet_rejects_non_image_data() {
        let error =
            Architecture::new(&spec(ModelKind::Lenet5), 13, 2, None).expect_err("13 features");
        assert!(
            error.to_string().contains("square single-channel images"),
            "{error}"
        );
    }

    #[test]
    fn flatten_and_load_round_trip() {
        let arch =
            Architecture::new(&spec(ModelKind::Lenet5), 784, 10, Some((28, 28))).expect("arch");
        let params = arch.initial_params(5);
        assert_eq!(params, arch.initial_params(5), "initialisation is seeded");
        let network = arch.build(&Device::flex()).map(&mut Loader {
            values: &params,
            offset: 0,
            require_grad: false,
        });
        assert_eq!(flatten(&network), params);
    }

    /// Central differences of the evaluated loss against the computed gradient, on `checked`
    /// parameters spread over the whole vector.
    fn check_gradient(arch: Architecture, features: &[f32], labels: &[u32], checked: usize) {
        for engine in [ComputeEngine::Native, ComputeEngine::Burn] {
            check_gradient_with(engine, arch.clone(), features, labels, checked);
        }
    }

    fn check_gradient_with(
        engine: ComputeEngine,
        arch: Architecture,
        features: &[f32],
        labels: &[u32],
        checked: usize,
    ) {
        let params = arch.initial_params(1);
        let mut computer = GradientComputer::with_engine(arch.clone(), engine);
        let mut grad = Vec::new();
        computer
            .gradient(&params, features, labels, &mut grad)
            .expect("gradient");
        assert_eq!(grad.len(), params.len());
        // burn's forward pass is the independent reference for every engine.
        let mut evaluator = Evaluator::with_engine(arch, ComputeEngine::Burn);
        let eps = 2e-3f32;
        let stride = (params.len() / checked).max(1);
        for i in (0..params.len()).step_by(stride) {
            let mut plus = params.clone();
            plus[i] += eps;
            let mut minus = params.clone();
            minus[i] -= eps;
            let up = evaluator
                .evaluate(&plus, features, labels)
                .expect("eval")
                .loss;
            let down = evaluator
                .evaluate(&minus, features, labels)
                .expect("eval")
                .loss;
            let numeric = (up - down) / (2.0 * f64::from(eps));
            let analytic = f64::from(grad[i]);
            assert!(
                (numeric - analytic).abs() < 2e-3 + 0.02 * analytic.abs(),
                "{engine:?} param {i}: numeric {numeric} vs analytic {analytic}"
            );
        }
    }

    fn seeded_batch(n: usize, dim: usize, classes: u32) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let dist = Uniform::new(-1.0f32, 1.0).expect("range");
        let features = (0..n * dim).map(|_| dist.sample(&mut rng)).collect();
        let labels = (0..n as u32).map(|i| i % classes).collect();
        (features, labels)
    }

    #[test]
    fn logistic_gradient_matches_finite_differences() {
        let arch = Architecture::new(&spec(ModelKind::Logistic), 3, 2, None).expect("arch");
        let (x, y) = seeded_batch(4, 3, 2);
        check_gradient(arch, &x, &y, usize::MAX);
    }

    #[test]
    fn mlp_gradient_matches_finite_differences() {
        let mlp = ModelSpec {
            kind: ModelKind::Mlp,
            hidden: Some(vec![6, 5]),
        };
        let arch = Architecture::new(&mlp, 4, 3, None).expect("arch");
        let (x, y) = seeded_batch(8, 4, 3);
        check_gradient(arch, &x, &y, usize::MAX);
    }

    #[test]
    fn lenet_gradient_matches_finite_differences() {
        let arch =
            Architecture::new(&spec(ModelKind::Lenet5), 144, 3, Some((12, 12))).expect("arch");
        let (x, y) = seeded_batch(4, 144, 3);
        check_gradient(arch, &x, &y, 60);
    }

    #[test]
    fn lenet_kernel_matches_burn_autodiff() {
        for (side, batch) in [(28, 5), (13, 3)] {
            let arch = Architecture::new(
                &spec(ModelKind::Lenet5),
                side * side,
                10,
                Some((side, side)),
            )
            .expect("arch");
            let (x, y) = seeded_batch(batch, side * side, 10);
            let params = arch.initial_params(2);
            let (mut native, mut burn) = (Vec::new(), Vec::new());
            let native_loss = GradientComputer::with_engine(arch.clone(), ComputeEngine::Native)
                .gradient(&params, &x, &y, &mut native)
                .expect("native");
            let burn_loss = GradientComputer::with_engine(arch, ComputeEngine::Burn)
                .gradient(&params, &x, &y, &mut burn)
                .expect("burn");
            assert!(
                (native_loss - burn_loss).abs() < 1e-5,
                "{native_loss} vs {burn_loss}"
            );
            assert_eq!(native.len(), burn.len());
            let scale = burn.iter().fold(0f32, |m, g| m.max(g.abs()));
            for (i, (a, b)) in native.iter().zip(&burn).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * scale.max(1.0),
                    "side {side} param {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn native_and_burn_evaluations_agree() {
        let arch =
            Architecture::new(&spec(ModelKind::Lenet5), 784, 10, Some((28, 28))).expect("arch");
        let (x, y) = seeded_batch(600, 784, 10);
        let params = arch.initial_params(3);
        let native = Evaluator::with_engine(arch.clone(), ComputeEngine::Native)
            .evaluate(&params, &x, &y)
            .expect("native");
        let burn = Evaluator::with_engine(arch, ComputeEngine::Burn)
            .evaluate(&params, &x, &y)
            .expect("burn");
        assert!(
            (native.loss - burn.loss).abs() < 1e-5,
            "{native:?} vs {burn:?}"
        );
        assert_eq!(native.accuracy, burn.accuracy);
    }

    #[test]
    fn wrong_parameter_count_is_an_error() {
        let arch = Architecture::new(&spec(ModelKind::Logistic), 3, 2, None).expect("arch");
        let mut computer = GradientComputer::new(arch);
        let mut grad = Vec::new();
        let error = computer
            .gradient(&[0.0; 3], &[0.0; 3], &[0], &mut grad)
            .expect_err("short vector");
        assert!(
            error
                .to_string()
                .contains("has 3 values but the logistic model has 8"),
            "{error}"
        );
    }
}
