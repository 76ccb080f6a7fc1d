//! A specialised LeNet-5 training step: convolutions as im2col + GEMM, the whole batch in one
//! channel-major layout ([channels, batch, height, width]) so that each layer is one large GEMM.
//!
//! burn-flex spends about 60% of a LeNet-5 step in loop-based convolution kernels; this path does
//! the same arithmetic through the `gemm` crate's AVX-512 micro-kernels. It produces exactly the
//! loss and gradient of the burn model (same parameter layout and order, checked by the tests
//! against burn's autodiff), and the burn path stays available as the reference.

use gemm::Parallelism;

/// Shapes of LeNet-5 on `side` x `side` single-channel images.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dims {
    side: usize,
    pooled1: usize,
    side2: usize,
    pooled2: usize,
    classes: usize,
}

const C1: usize = 6;
const C2: usize = 16;
const K: usize = 5;
const PAD1: usize = 2;
const FC1: usize = 120;
const FC2: usize = 84;

impl Dims {
    fn new(side: usize, classes: usize) -> Self {
        let pooled1 = side / 2;
        let side2 = pooled1 - (K - 1);
        Self {
            side,
            pooled1,
            side2,
            pooled2: side2 / 2,
            classes,
        }
    }

    fn flat(&self) -> usize {
        C2 * self.pooled2 * self.pooled2
    }

    /// Offsets of each parameter tensor in the flat vector, in burn's visiting order.
    fn offsets(&self) -> [usize; 11] {
        let sizes = [
            C1 * K * K,
            C1,
            C2 * C1 * K * K,
            C2,
            self.flat() * FC1,
            FC1,
            FC1 * FC2,
            FC2,
            FC2 * self.classes,
            self.classes,
        ];
        let mut offsets = [0; 11];
        for (i, size) in sizes.iter().enumerate() {
            offsets[i + 1] = offsets[i] + size;
        }
        offsets
    }
}

/// `dst (m x n, row-major) = [dst +] a (m x k) * b (k x n)`, where `a` and `b` are row-major or,
/// when flagged, stored transposed. Lengths are checked, so the unsafe call stays in bounds.
#[allow(clippy::too_many_arguments)]
fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(
        dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "matmul shapes"
    );
    let (a_rs, a_cs) = if a_transposed {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if b_transposed {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    // SAFETY: the assertion above keeps every strided access of the m x k, k x n and m x n
    // matrices inside the slices; `dst` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn relu_in_place(values: &mut [f32]) {
    for v in values {
        *v = v.max(0.0);
    }
}

/// 2x2 max-pool of [channels, batch, side, side] into [channels, batch, side/2, side/2], keeping the
/// index of each maximum for the backward pass.
fn max_pool(input: &[f32], planes: usize, side: usize, out: &mut Vec<f32>, argmax: &mut Vec<u32>) {
    let half = side / 2;
    out.resize(planes * half * half, 0.0);
    argmax.resize(planes * half * half, 0);
    for plane in 0..planes {
        for y in 0..half {
            let top_start = plane * side * side + 2 * y * side;
            let bottom_start = top_start + side;
            let top = &input[top_start..top_start + 2 * half];
            let bottom = &input[bottom_start..bottom_start + 2 * half];
            let at = (plane * half + y) * half;
            let out_row = &mut out[at..at + half];
            let arg_row = &mut argmax[at..at + half];
            for x in 0..half {
                let mut best = top[2 * x];
                let mut index = top_start + 2 * x;
                if top[2 * x + 1] > best {
                    best = top[2 * x + 1];
                    index = top_start + 2 * x + 1;
                }
                if bottom[2 * x] > best {
                    best = bottom[2 * x];
                    index = bottom_start + 2 * x;
                }
                if bottom[2 * x + 1] > best {
                    best = bottom[2 * x + 1];
                    index = bottom_start + 2 * x + 1;
                }
                out_row[x] = best;
                arg_row[x] = index as u32;
            }
        }
    }
}

/// Routes pooled gradients back to their maxima, through the ReLU before the pool.
fn max_pool_backward(grad_pooled: &[f32], argmax: &[u32], activations: &[f32], grad: &mut [f32]) {
    grad.fill(0.0);
    for (g, &index) in grad_pooled.iter().zip(argmax) {
        let index = index as usize;
        if activations[index] > 0.0 {
            grad[index] += g;
        }
    }
}

/// Compute threads of the current rayon pool (a function's CPU share) as GEMM parallelism.
fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// Reusable buffers: allocated on the first step, reused by every later one.
#[derive(Default)]
struct Buffers {
    cols1: Vec<f32>,
    act1: Vec<f32>,
    pool1: Vec<f32>,
    arg1: Vec<u32>,
    cols2: Vec<f32>,
    act2: Vec<f32>,
    pool2: Vec<f32>,
    arg2: Vec<u32>,
    flat: Vec<f32>,
    hidden1: Vec<f32>,
    hidden2: Vec<f32>,
    logits: Vec<f32>,
    grad_logits: Vec<f32>,
    grad_hidden2: Vec<f32>,
    grad_hidden1: Vec<f32>,
    grad_flat: Vec<f32>,
    grad_pool2: Vec<f32>,
    grad_act2: Vec<f32>,
    grad_cols2: Vec<f32>,
    grad_pool1: Vec<f32>,
    grad_act1: Vec<f32>,
}

fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

pub struct LenetKernel {
    dims: Dims,
    buffers: Buffers,
}

impl LenetKernel {
    pub fn new(side: usize, classes: usize) -> Self {
        Self {
            dims: Dims::new(side, classes),
            buffers: Buffers::default(),
        }
    }

    pub fn param_count(&self) -> usize {
        self.dims.offsets()[10]
    }

    /// Runs the network forward for a batch; activations stay in the buffers for the backward pass.
    fn forward(&mut self, params: &[f32], features: &[f32], batch: usize, par: Parallelism) {
        let d = self.dims;
        let o = d.offsets();
        let p = |i: usize| &params[o[i]..o[i + 1]];
        let buf = &mut self.buffers;
        // conv1 (pad 2) as one GEMM: [6 x 25] x [25 x batch*side*side].
        let pixels = d.side * d.side;
        let n1 = batch * pixels;
        let cols1 = sized(&mut buf.cols1, K * K * n1);
        for ky in 0..K {
            for kx in 0..K {
                let row = &mut cols1[(ky * K + kx) * n1..(ky * K + kx + 1) * n1];
                for b in 0..batch {
                    let image = &features[b * pixels..(b + 1) * pixels];
                    for y in 0..d.side {
                        let out = &mut row[b * pixels + y * d.side..b * pixels + (y + 1) * d.side];
                        let sy = (y + ky) as isize - PAD1 as isize;
                        if sy < 0 || sy >= d.side as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let source = &image[sy as usize * d.side..(sy as usize + 1) * d.side];
                        // Output x reads source x + kx - PAD1; outside the image it is padding.
                        let first = PAD1.saturating_sub(kx);
                        let last = (d.side + PAD1 - kx).min(d.side);
                        out[..first].fill(0.0);
                        out[last..].fill(0.0);
                        out[first..last]
                            .copy_from_slice(&source[first + kx - PAD1..last + kx - PAD1]);
                    }
                }
            }
        }
        let act1 = sized(&mut buf.act1, C1 * n1);
        for (c, plane) in act1.chunks_mut(n1).enumerate() {
            plane.fill(p(1)[c]);
        }
        matmul(act1, C1, n1, K * K, p(0), false, cols1, false, true, par);
        relu_in_place(act1);
        max_pool(act1, C1 * batch, d.side, &mut buf.pool1, &mut buf.arg1);

        // conv2 as one GEMM: [16 x 150] x [150 x batch*side2*side2].
        let plane1 = d.pooled1 * d.pooled1;
        let plane2 = d.side2 * d.side2;
        let n2 = batch * plane2;
        let cols2 = sized(&mut buf.cols2, C1 * K * K * n2);
        for c in 0..C1 {
            for ky in 0..K {
                for kx in 0..K {
                    let row =
                        &mut cols2[((c * K + ky) * K + kx) * n2..((c * K + ky) * K + kx + 1) * n2];
                    for b in 0..batch {
                        let source =
                            &buf.pool1[(c * batch + b) * plane1..(c * batch + b + 1) * plane1];
                        for y in 0..d.side2 {
                            let from = (y + ky) * d.pooled1 + kx;
                            row[b * plane2 + y * d.side2..b * plane2 + (y + 1) * d.side2]
                                .copy_from_slice(&source[from..from + d.side2]);
                        }
                    }
                }
            }
        }
        let act2 = sized(&mut buf.act2, C2 * n2);
        for (c, plane) in act2.chunks_mut(n2).enumerate() {
            plane.fill(p(3)[c]);
        }
        matmul(
            act2,
            C2,
            n2,
            C1 * K * K,
            p(2),
            false,
            cols2,
            false,
            true,
            par,
        );
        relu_in_place(act2);
        max_pool(act2, C2 * batch, d.side2, &mut buf.pool2, &mut buf.arg2);

        // [16, batch, 5, 5] -> [batch, 400] in burn's flatten order (channel, row, column).
        let plane3 = d.pooled2 * d.pooled2;
        let flat_len = d.flat();
        let flat = sized(&mut buf.flat, batch * flat_len);
        for c in 0..C2 {
            for b in 0..batch {
                flat[b * flat_len + c * plane3..b * flat_len + (c + 1) * plane3].copy_from_slice(
                    &buf.pool2[(c * batch + b) * plane3..(c * batch + b + 1) * plane3],
                );
            }
        }

        // Fully connected layers; burn stores linear weights as [in, out].
        let dense = |out: &mut Vec<f32>,
                     input: &[f32],
                     width_in: usize,
                     width_out: usize,
                     w: &[f32],
                     bias: &[f32],
                     relu: bool| {
            let out = sized(out, batch * width_out);
            for row in out.chunks_mut(width_out) {
                row.copy_from_slice(bias);
            }
            matmul(
                out, batch, width_out, width_in, input, false, w, false, true, par,
            );
            if relu {
                relu_in_place(out);
            }
        };
        dense(&mut buf.hidden1, flat, flat_len, FC1, p(4), p(5), true);
        dense(&mut buf.hidden2, &buf.hidden1, FC1, FC2, p(6), p(7), true);
        dense(
            &mut buf.logits,
            &buf.hidden2,
            FC2,
            d.classes,
            p(8),
            p(9),
            false,
        );
    }

    /// Logits `[batch, classes]` of a batch, for evaluation.
    pub fn logits(&mut self, params: &[f32], features: &[f32], batch: usize) -> &[f32] {
        self.forward(params, features, batch, parallelism());
        &self.buffers.logits[..batch * self.dims.classes]
    }

    /// Mean cross-entropy of the batch; the gradient is written into `grad`.
    pub fn gradient(
        &mut self,
        params: &[f32],
        features: &[f32],
        labels: &[u32],
        grad: &mut Vec<f32>,
    ) -> f32 {
        let batch = labels.len();
        let par = parallelism();
        self.forward(params, features, batch, par);
        let d = self.dims;
        let o = d.offsets();
        let p = |i: usize| &params[o[i]..o[i + 1]];
        let buf = &mut self.buffers;
        grad.clear();
        grad.resize(o[10], 0.0);
        let pixels = d.side * d.side;
        let n1 = batch * pixels;
        let plane1 = d.pooled1 * d.pooled1;
        let plane2 = d.side2 * d.side2;
        let n2 = batch * plane2;
        let plane3 = d.pooled2 * d.pooled2;
        let flat_len = d.flat();
        let cols1 = &buf.cols1[..K * K * n1];
        let act1 = &buf.act1[..C1 * n1];
        let cols2 = &buf.cols2[..C1 * K * K * n2];
        let act2 = &buf.act2[..C2 * n2];
        let flat = &buf.flat[..batch * flat_len];

        // Softmax cross-entropy, mean over the batch.
        let grad_logits = sized(&mut buf.grad_logits, batch * d.classes);
        let mut loss = 0.0f64;
        for (b, (row, g)) in buf
            .logits
            .chunks(d.classes)
            .zip(grad_logits.chunks_mut(d.classes))
            .enumerate()
        {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let label = labels[b] as usize;
            loss += f64::from(max + sum.ln() - row[label]);
            for (j, (gj, v)) in g.iter_mut().zip(row).enumerate() {
                let softmax = (v - max).exp() / sum;
                *gj = (softmax - if j == label { 1.0 } else { 0.0 }) / batch as f32;
            }
        }

        let (g_conv1, rest) = grad.split_at_mut(o[2]);
        let (g_conv2, rest) = rest.split_at_mut(o[4] - o[2]);
        let (g_fc1, rest) = rest.split_at_mut(o[6] - o[4]);
        let (g_fc2, g_fc3) = rest.split_at_mut(o[8] - o[6]);

        // Dense backward: weight gradient input^T x grad_out, bias gradient the column sums, input
        // gradient grad_out x w^T masked by the ReLU of the input.
        let dense_backward = |grad_out: &[f32],
                              input: &[f32],
                              width_in: usize,
                              width_out: usize,
                              w: &[f32],
                              g_params: &mut [f32],
                              grad_in: Option<&mut Vec<f32>>| {
            let (g_w, g_b) = g_params.split_at_mut(width_in * width_out);
            matmul(
                g_w, width_in, width_out, batch, input, true, grad_out, false, false, par,
            );
            for row in grad_out.chunks(width_out) {
                for (gb, g) in g_b.iter_mut().zip(row) {
                    *gb += g;
                }
            }
            if let Some(grad_in) = grad_in {
                let grad_in = sized(grad_in, batch * width_in);
                matmul(
                    grad_in, batch, width_in, width_out, grad_out, false, w, true, false, par,
                );
                for (g, x) in grad_in.iter_mut().zip(input) {
                    if *x <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
        };
        dense_backward(
            grad_logits,
            &buf.hidden2,
            FC2,
            d.classes,
            p(8),
            g_fc3,
            Some(&mut buf.grad_hidden2),
        );
        dense_backward(
            &buf.grad_hidden2,
            &buf.hidden1,
            FC1,
            FC2,
            p(6),
            g_fc2,
            Some(&mut buf.grad_hidden1),
        );
        // The flattened pool output is not masked here: the pool's backward applies conv2's ReLU.
        let (g_w, g_b) = g_fc1.split_at_mut(flat_len * FC1);
        matmul(
            g_w,
            flat_len,
            FC1,
            batch,
            flat,
            true,
            &buf.grad_hidden1,
            false,
            false,
            par,
        );
        for row in buf.grad_hidden1.chunks(FC1) {
            for (gb, g) in g_b.iter_mut().zip(row) {
                *gb += g;
            }
        }
        let grad_flat = sized(&mut buf.grad_flat, batch * flat_len);
        matmul(
            grad_flat,
            batch,
            flat_len,
            FC1,
            &buf.grad_hidden1,
            false,
            p(4),
            true,
            false,
            par,
        );

        // Back through pool2 and conv2's ReLU, into [16, batch, side2, side2].
        let grad_pool2 = sized(&mut buf.grad_pool2, C2 * batch * plane3);
        for c in 0..C2 {
            for b in 0..batch {
                grad_pool2[(c * batch + b) * plane3..(c * batch + b + 1) * plane3].copy_from_slice(
                    &grad_flat[b * flat_len + c * plane3..b * flat_len + (c + 1) * plane3],
                );
            }
        }
        let grad_act2 = sized(&mut buf.grad_act2, C2 * n2);
        max_pool_backward(grad_pool2, &buf.arg2, act2, grad_act2);

        // conv2 backward: weights [16 x 150] = grad x cols2^T, input columns [150 x n2] = w^T x grad.
        let (g_w2, g_b2) = g_conv2.split_at_mut(C2 * C1 * K * K);
        matmul(
            g_w2,
            C2,
            C1 * K * K,
            n2,
            grad_act2,
            false,
            cols2,
            true,
            false,
            par,
        );
        for (gb, plane) in g_b2.iter_mut().zip(grad_act2.chunks(n2)) {
            *gb = plane.iter().sum();
        }
        let grad_cols2 = sized(&mut buf.grad_cols2, C1 * K * K * n2);
        matmul(
            grad_cols2,
            C1 * K * K,
            n2,
            C2,
            p(2),
            true,
            grad_act2,
            false,
            false,
            par,
        );
        let grad_pool1 = sized(&mut buf.grad_pool1, C1 * batch * plane1);
        grad_pool1.fill(0.0);
        for c in 0..C1 {
            for ky in 0..K {
                for kx in 0..K {
                    let row =
                        &grad_cols2[((c * K + ky) * K + kx) * n2..((c * K + ky) * K + kx + 1) * n2];
                    for b in 0..batch {
                        let target =
                            &mut grad_pool1[(c * batch + b) * plane1..(c * batch + b + 1) * plane1];
                        for y in 0..d.side2 {
                            let to = (y + ky) * d.pooled1 + kx;
                            for (t, g) in target[to..to + d.side2]
                                .iter_mut()
                                .zip(&row[b * plane2 + y * d.side2..b * plane2 + (y + 1) * d.side2])
                            {
                                *t += g;
                            }
                        }
                    }
                }
            }
        }

        // Back through pool1 and conv1's ReLU; conv1 needs no input gradient.
        let grad_act1 = sized(&mut buf.grad_act1, C1 * n1);
        max_pool_backward(grad_pool1, &buf.arg1, act1, grad_act1);
        let (g_w1, g_b1) = g_conv1.split_at_mut(C1 * K * K);
        matmul(
            g_w1,
            C1,
            K * K,
            n1,
            grad_act1,
            false,
            cols1,
            true,
            false,
            par,
        );
        for (gb, plane) in g_b1.iter_mut().zip(grad_act1.chunks(n1)) {
            *gb = plane.iter().sum();
        }
        (loss / batch as f64) as f32
    }
}
