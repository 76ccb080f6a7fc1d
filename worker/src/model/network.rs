//! The networks themselves, as burn modules.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
}

impl Mlp {
    pub fn new(input: usize, hidden: &[usize], classes: usize, device: &Device) -> Self {
        let mut layers = Vec::with_capacity(hidden.len());
        let mut width = input;
        for &next in hidden {
            layers.push(LinearConfig::new(width, next).init(device));
            width = next;
        }
        Self {
            hidden: layers,
            output: LinearConfig::new(width, classes).init(device),
        }
    }

    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        for layer in &self.hidden {
            x = relu(layer.forward(x));
        }
        self.output.forward(x)
    }
}

#[derive(Module, Debug)]
pub struct Lenet5 {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    side: usize,
}

impl Lenet5 {
    /// `side` is the height and width of the single-channel input (28 for MNIST-shaped data).
    pub fn new(side: usize, classes: usize, device: &Device) -> Self {
        // conv1 keeps the side (pad 2), pool halves it, conv2 (5x5, no pad) takes 4, pool halves it.
        let final_side = (side / 2 - 4) / 2;
        Self {
            conv1: Conv2dConfig::new([1, 6], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            conv2: Conv2dConfig::new([6, 16], [5, 5]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(16 * final_side * final_side, 120).init(device),
            fc2: LinearConfig::new(120, 84).init(device),
            fc3: LinearConfig::new(84, classes).init(device),
            side,
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [batch, _] = x.dims();
        let x: Tensor<4> = x.reshape([batch, 1, self.side, self.side]);
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = relu(self.fc1.forward(x));
        let x = relu(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

// One network lives per function instance, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    Logistic(Linear),
    Mlp(Mlp),
    Lenet5(Lenet5),
}

impl Network {
    /// Logits for a batch of flattened samples `[batch, features]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Logistic(linear) => linear.forward(x),
            Network::Mlp(mlp) => mlp.forward(x),
            Network::Lenet5(lenet) => lenet.forward(x),
        }
    }
}
