//! A small multilayer perceptron on ndarray with hand-written backpropagation and Adam: enough for
//! a policy and a value function of a few thousand weights, and no framework to depend on.

use ndarray::{Array1, Array2, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// inputs x outputs
    pub weights: Array2<f64>,
    pub bias: Array1<f64>,
}

/// tanh on every hidden layer, linear output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub layers: Vec<Dense>,
}

pub type Gradients = Vec<(Array2<f64>, Array1<f64>)>;

impl Mlp {
    /// Glorot-uniform weights; the output layer starts small so the first policy is near uniform.
    pub fn new(sizes: &[usize], rng: &mut impl Rng) -> Self {
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, pair)| {
                let (inputs, outputs) = (pair[0], pair[1]);
                let limit = (6.0 / (inputs + outputs) as f64).sqrt()
                    * if i + 2 == sizes.len() { 0.1 } else { 1.0 };
                Dense {
                    weights: Array2::from_shape_fn((inputs, outputs), |_| {
                        rng.random_range(-limit..limit)
                    }),
                    bias: Array1::zeros(outputs),
                }
            })
            .collect();
        Self { layers }
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.weights.nrows())
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.weights.ncols())
    }

    /// Layer shapes chain, biases match, every number is finite.
    pub fn is_well_formed(&self) -> bool {
        !self.layers.is_empty()
            && self
                .layers
                .windows(2)
                .all(|pair| pair[0].weights.ncols() == pair[1].weights.nrows())
            && self.layers.iter().all(|layer| {
                layer.bias.len() == layer.weights.ncols()
                    && layer
                        .weights
                        .iter()
                        .chain(layer.bias.iter())
                        .all(|v| v.is_finite())
            })
    }

    pub fn forward(&self, input: &Array2<f64>) -> Array2<f64> {
        let mut x = input.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = x.dot(&layer.weights) + &layer.bias;
            if i + 1 < self.layers.len() {
                x.mapv_inplace(f64::tanh);
            }
        }
        x
    }

    /// The forward pass keeping every layer's input for [`Mlp::backward`].
    pub fn forward_cached(&self, input: &Array2<f64>) -> (Array2<f64>, Vec<Array2<f64>>) {
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut x = input.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let next = x.dot(&layer.weights) + &layer.bias;
            inputs.push(x);
            x = next;
            if i + 1 < self.layers.len() {
                x.mapv_inplace(f64::tanh);
            }
        }
        (x, inputs)
    }

    /// Gradients of sum(grad_output * output) with respect to every weight and bias.
    pub fn backward(&self, inputs: &[Array2<f64>], grad_output: &Array2<f64>) -> Gradients {
        let mut grads = Vec::with_capacity(self.layers.len());
        let mut delta = grad_output.clone();
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let input = &inputs[i];
            grads.push((input.t().dot(&delta), delta.sum_axis(Axis(0))));
            if i > 0 {
                // inputs[i] is tanh of the previous layer: d tanh = 1 - tanh^2.
                let derivative = input.mapv(|a| 1.0 - a * a);
                delta = delta.dot(&layer.weights.t()) * derivative;
            }
        }
        grads.reverse();
        grads
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub learning_rate: f64,
    pub max_grad_norm: f64,
    step: i32,
    first: Gradients,
    second: Gradients,
}

impl Adam {
    pub fn new(mlp: &Mlp, learning_rate: f64) -> Self {
        let zeros: Gradients = mlp
            .layers
            .iter()
            .map(|l| {
                (
                    Array2::zeros(l.weights.raw_dim()),
                    Array1::zeros(l.bias.raw_dim()),
                )
            })
            .collect();
        Self {
            learning_rate,
            max_grad_norm: 1.0,
            step: 0,
            first: zeros.clone(),
            second: zeros,
        }
    }

    /// Whether this optimiser state belongs to a network of this shape.
    pub fn fits(&self, mlp: &Mlp) -> bool {
        self.first.len() == mlp.layers.len()
            && self.second.len() == mlp.layers.len()
            && self
                .first
                .iter()
                .chain(&self.second)
                .zip(mlp.layers.iter().chain(&mlp.layers))
                .all(|((w, b), layer)| {
                    w.raw_dim() == layer.weights.raw_dim() && b.len() == layer.bias.len()
                })
    }

    /// One descent step; gradients are clipped to a global norm first, since a single long episode
    /// can produce a gradient far larger than the rest.
    pub fn step(&mut self, mlp: &mut Mlp, grads: &Gradients) {
        const BETA1: f64 = 0.9;
        const BETA2: f64 = 0.999;
        let norm = grads
            .iter()
            .map(|(w, b)| w.iter().chain(b.iter()).map(|g| g * g).sum::<f64>())
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() {
            return;
        }
        let scale = if norm > self.max_grad_norm {
            self.max_grad_norm / norm
        } else {
            1.0
        };
        self.step += 1;
        let correction1 = 1.0 - BETA1.powi(self.step);
        let correction2 = 1.0 - BETA2.powi(self.step);
        let lr = self.learning_rate;
        for (((layer, (gw, gb)), (mw, mb)), (vw, vb)) in mlp
            .layers
            .iter_mut()
            .zip(grads)
            .zip(self.first.iter_mut())
            .zip(self.second.iter_mut())
        {
            let update = |param: &mut f64, g: f64, m: &mut f64, v: &mut f64| {
                let g = g * scale;
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                *param -= lr * (*m / correction1) / ((*v / correction2).sqrt() + 1e-8);
            };
            ndarray::Zip::from(&mut layer.weights)
                .and(gw)
                .and(mw)
                .and(vw)
                .for_each(|p, &g, m, v| update(p, g, m, v));
            ndarray::Zip::from(&mut layer.bias)
                .and(gb)
                .and(mb)
                .and(vb)
                .for_each(|p, &g, m, v| update(p, g, m, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn backward_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut mlp = Mlp::new(&[3, 5, 4, 1], &mut rng);
        let input = Array2::from_shape_fn((6, 3), |(i, j)| (i as f64 - 2.0) * 0.3 + j as f64 * 0.1);
        let weights = Array2::from_shape_fn((6, 1), |(i, _)| 1.0 + i as f64);
        let objective = |mlp: &Mlp| (mlp.forward(&input) * &weights).sum();
        let (_, cache) = mlp.forward_cached(&input);
        let grads = mlp.backward(&cache, &weights);
        for (layer, (grad, _)) in grads.iter().enumerate() {
            let (rows, cols) = mlp.layers[layer].weights.dim();
            for (r, c) in [(0, 0), (rows - 1, cols - 1)] {
                let h = 1e-6;
                mlp.layers[layer].weights[[r, c]] += h;
                let up = objective(&mlp);
                mlp.layers[layer].weights[[r, c]] -= 2.0 * h;
                let down = objective(&mlp);
                mlp.layers[layer].weights[[r, c]] += h;
                let numeric = (up - down) / (2.0 * h);
                assert!(
                    (numeric - grad[[r, c]]).abs() < 1e-5,
                    "layer {layer}: {numeric} vs {}",
                    grad[[r, c]]
                );
            }
        }
    }

    #[test]
    fn adam_fits_a_line() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut mlp = Mlp::new(&[1, 8, 1], &mut rng);
        let mut adam = Adam::new(&mlp, 0.02);
        let x = Array2::from_shape_fn((16, 1), |(i, _)| i as f64 / 8.0 - 1.0);
        let y = x.mapv(|v| 0.5 * v - 0.2);
        for _ in 0..2000 {
            let (out, cache) = mlp.forward_cached(&x);
            let grad = (&out - &y) / 16.0;
            let grads = mlp.backward(&cache, &grad);
            adam.step(&mut mlp, &grads);
        }
        let error = (mlp.forward(&x) - &y).mapv(|e| e * e).mean().unwrap_or(1.0);
        assert!(error < 1e-3, "{error}");
        assert!(adam.fits(&mlp));
    }
}
