//! A network's parameters as one contiguous `f32` vector (what a parameter store holds), in the
//! module's visiting order, and back.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::{Gradients, TensorData};

/// Shapes of the float parameters in visiting order.
#[derive(Default)]
pub(crate) struct ShapeCollector(pub Vec<Vec<usize>>);

impl ModuleVisitor for ShapeCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.shape().dims::<D>().to_vec());
    }
}

/// Appends every float parameter to one vector.
pub(crate) struct Flattener<'a>(pub &'a mut Vec<f32>);

impl ModuleVisitor for Flattener<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        match data.as_slice::<f32>() {
            Ok(values) => self.0.extend_from_slice(values),
            Err(_) => self.0.extend(data.iter::<f32>()),
        }
    }
}

/// Appends every float parameter's gradient; parameters without one contribute zeros.
pub(crate) struct GradientFlattener<'a> {
    pub grads: &'a Gradients,
    pub out: &'a mut Vec<f32>,
}

impl ModuleVisitor for GradientFlattener<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match param.val().grad(self.grads) {
            Some(grad) => {
                let data = grad.into_data();
                match data.as_slice::<f32>() {
                    Ok(values) => self.out.extend_from_slice(values),
                    Err(_) => self.out.extend(data.iter::<f32>()),
                }
            }
            None => {
                let len = param.shape().num_elements();
                self.out.resize(self.out.len() + len, 0.0);
            }
        }
    }
}

/// Replaces every float parameter with the next slice of a flat vector whose length the caller
/// has checked against the architecture.
pub(crate) struct Loader<'a> {
    pub values: &'a [f32],
    pub offset: usize,
    pub require_grad: bool,
}

impl ModuleMapper for Loader<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let start = self.offset;
        let values = self.values;
        let require_grad = self.require_grad;
        let mut consumed = 0;
        let param = param.map(|tensor| {
            let shape = tensor.shape();
            consumed = shape.num_elements();
            let end = (start + consumed).min(values.len());
            let data = TensorData::new(values[start..end].to_vec(), shape);
            let fresh = Tensor::from_data(data, &tensor.device());
            if require_grad {
                fresh.require_grad()
            } else {
                fresh
            }
        });
        self.offset += consumed;
        param
    }
}
