//! Faster kernels swapped into optimized plans where tract's own are slow for the shapes that
//! served models use.
//!
//! tract 0.23 has a vectorised max pool only for 2x2 windows with stride 1; every other 2D pool,
//! the common 2x2 stride 2 of CNNs among them, goes through its generic patch walk at about 140
//! instructions an output. On the test CNN (`tests/models/cnn.onnx`) the two pools took 22.6 of
//! the 48 µs of an inference. [`MaxPool2d`] computes the same pools a row at a time over
//! contiguous NCHW `f32` planes, which the compiler vectorises.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::OptMaxPool;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// Replaces, in an optimized model, every operator for which this module has a faster kernel
/// computing the same values.
pub(super) fn swap_in(mut model: TypedModel) -> TractResult<TypedModel> {
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(pool) = node.op_as::<OptMaxPool>() else { continue };
        let Some(input) = node.inputs.first() else { continue };
        if let Some(fast) = MaxPool2d::replacing(pool, model.outlet_fact(*input)?) {
            model.node_mut(id).op = Box::new(fast);
        }
    }
    Ok(model)
}

/// A 2D max pool over an `f32` NCHW tensor with concrete height and width: any window, stride
/// and padding, no dilation, no indices output. Padding never wins (as in tract and
/// onnxruntime); a window entirely in the padding gives `f32::MIN`, as tract's does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaxPool2d {
    /// Input height and width.
    input: [usize; 2],
    /// Output height and width.
    output: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    /// Padding before the first row and column.
    pad_before: [usize; 2],
    /// The operator replaced, for its output facts (shapes with free batch dimensions).
    replaced: OptMaxPool,
}

impl MaxPool2d {
    /// The fast pool for `pool` on `input`, when it computes the same values.
    fn replacing(pool: &OptMaxPool, input: &TypedFact) -> Option<MaxPool2d> {
        let spec = &pool.pool_spec;
        if pool.with_index_outputs.is_some()
            || spec.data_format != DataFormat::NCHW
            || spec.rank() != 2
            || input.datum_type != f32::datum_type()
            || input.rank() != 4
            || spec.dilations().iter().any(|&d| d != 1)
        {
            return None;
        }
        let hw = [input.shape[2].to_usize().ok()?, input.shape[3].to_usize().ok()?];
        let padded = spec.computed_padding(&hw);
        let strides = spec.strides();
        let pair = |f: &dyn Fn(usize) -> usize| [f(0), f(1)];
        Some(MaxPool2d {
            input: hw,
            output: pair(&|axis| padded[axis].convoluted),
            kernel: pair(&|axis| spec.kernel_shape[axis]),
            strides: pair(&|axis| strides[axis]),
            pad_before: pair(&|axis| padded[axis].pad_before),
            replaced: pool.clone(),
        })
    }

    /// Pools one `[height, width]` plane into one `[out_height, out_width]` plane.
    fn plane(&self, input: &[f32], output: &mut [f32]) {
        let ([h, w], [_, ow]) = (self.input, self.output);
        let ([kh, kw], [sh, sw], [pt, pl]) = (self.kernel, self.strides, self.pad_before);
        output.fill(f32::MIN);
        for (oy, row) in output.chunks_exact_mut(ow).enumerate() {
            for ky in 0..kh {
                let Some(iy) = (oy * sh + ky).checked_sub(pt).filter(|&iy| iy < h) else { continue };
                let taps = &input[iy * w..][..w];
                if kw == 2 && sw == 2 && pl == 0 {
                    // The pool of most CNNs, 2x2 with stride 2: both taps of a window at once, which
                    // vectorises where a strided walk per tap does not.
                    let pairs = taps.chunks_exact(2);
                    let last = pairs.remainder().first().copied();
                    fold_max(row, pairs.map(|p| if p[0] < p[1] { p[1] } else { p[0] }));
                    // With ceil_mode, a last window of one column.
                    if let (Some(tap), Some(out)) = (last, row.get_mut(w / 2)) {
                        fold_max(std::slice::from_mut(out), std::iter::once(tap));
                    }
                    continue;
                }
                for kx in 0..kw {
                    // Outputs ox whose tap ix = ox * sw + kx - pl lies in 0..w.
                    let first = pl.saturating_sub(kx).div_ceil(sw);
                    let Some(last) = (w + pl).checked_sub(kx + 1).map(|m| (m / sw).min(ow - 1)) else {
                        continue;
                    };
                    if first > last {
                        continue;
                    }
                    let start = first * sw + kx - pl;
                    let row = &mut row[first..=last];
                    match sw {
                        1 => fold_max(row, taps[start..].iter().copied()),
                        _ => fold_max(row, taps[start..].iter().step_by(sw).copied()),
                    }
                }
            }
        }
    }
}

/// `row[i] = max(row[i], taps[i])`, with tract's comparison (a NaN tap never wins).
fn fold_max(row: &mut [f32], taps: impl Iterator<Item = f32>) {
    for (o, v) in row.iter_mut().zip(taps) {
        if *o < v {
            *o = v;
        }
    }
}

impl Op for MaxPool2d {
    fn name(&self) -> StaticName {
        "MaxPool2d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?}, strides {:?}, padding before {:?}, {:?} -> {:?}",
            self.kernel, self.strides, self.pad_before, self.input, self.output
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2d {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        ensure!(
            shape.len() == 4 && shape[2..] == self.input,
            "MaxPool2d: input of shape {shape:?}, expected [N, C, {}, {}]",
            self.input[0],
            self.input[1]
        );
        let ([h, w], [oh, ow]) = (self.input, self.output);
        let mut output = vec![f32::MIN; shape[0] * shape[1] * oh * ow];
        if oh * ow > 0 && h * w > 0 {
            let plain = input.try_as_plain_ram()?;
            let data = plain.as_slice::<f32>()?;
            for (input, output) in data.chunks_exact(h * w).zip(output.chunks_exact_mut(oh * ow)) {
                self.plane(input, output);
            }
        }
        Ok(tvec!(Tensor::from_shape(&[shape[0], shape[1], oh, ow], &output)?.into_tvalue()))
    }
}

impl TypedOp for MaxPool2d {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.replaced.output_facts(inputs)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{MaxPool, PaddingSpec, PoolSpec};

    fn spec(kernel: [usize; 2], strides: [usize; 2], padding: PaddingSpec, channels: usize) -> PoolSpec {
        PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec![kernel[0], kernel[1]],
            padding,
            dilations: None,
            strides: Some(tvec![strides[0], strides[1]]),
            input_channels: channels,
            output_channels: channels,
        }
    }

    /// tract's optimized model of one max pool on an input of `fact`.
    fn optimized(spec: &PoolSpec, indices: Option<DatumType>, fact: TypedFact) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", fact).unwrap();
        let y = model.wire_node("pool", MaxPool::new(spec.clone(), indices), &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model.into_optimized().unwrap()
    }

    fn swapped(model: &TypedModel) -> bool {
        model.nodes().iter().any(|n| n.op_is::<MaxPool2d>())
    }

    #[test]
    fn matches_tract_on_the_pools_cnns_use() {
        let explicit =
            |b: [usize; 2], a: [usize; 2]| PaddingSpec::Explicit(tvec![b[0], b[1]], tvec![a[0], a[1]]);
        for (kernel, strides, padding, shape) in [
            ([2, 2], [2, 2], PaddingSpec::Valid, [2, 3, 28, 28]),
            ([2, 2], [2, 2], PaddingSpec::Valid, [1, 4, 7, 9]),
            ([3, 3], [2, 2], explicit([1, 1], [1, 1]), [1, 2, 15, 16]),
            ([3, 3], [1, 1], PaddingSpec::SameUpper, [1, 2, 6, 5]),
            ([2, 3], [1, 3], explicit([0, 2], [1, 2]), [2, 1, 5, 11]),
            ([2, 2], [2, 2], PaddingSpec::ExplicitOnnxPool(tvec![0, 0], tvec![0, 0], true), [1, 2, 7, 7]),
            ([2, 2], [1, 1], PaddingSpec::Valid, [1, 1, 4, 4]),
        ] {
            let tract = optimized(&spec(kernel, strides, padding.clone(), shape[1]), None, f32::fact(shape));
            let fast = swap_in(tract.clone()).unwrap();
            assert!(swapped(&fast), "the fast kernel was not swapped in");
            // Distinct values in a scrambled order, some negative, so that every tap matters.
            let len: usize = shape.iter().product();
            let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 - 500.0).collect();
            let input = Tensor::from_shape(&shape, &values).unwrap();
            let run = |model: TypedModel| {
                let out = model.into_runnable().unwrap().run(tvec!(input.clone().into_tvalue())).unwrap();
                out[0].clone().into_tensor()
            };
            assert_eq!(
                run(tract),
                run(fast),
                "kernel {kernel:?} strides {strides:?} {padding:?} on {shape:?}"
            );
        }
    }

    #[test]
    fn leaves_pools_it_does_not_cover_to_tract() {
        let mut nhwc = spec([2, 2], [1, 1], PaddingSpec::Valid, 3);
        nhwc.data_format = DataFormat::NHWC;
        assert!(!swapped(&swap_in(optimized(&nhwc, None, f32::fact([1, 8, 8, 3]))).unwrap()), "NHWC");
        let mut dilated = spec([2, 2], [1, 1], PaddingSpec::Valid, 3);
        dilated.dilations = Some(tvec![2, 2]);
        assert!(!swapped(&swap_in(optimized(&dilated, None, f32::fact([1, 3, 8, 8]))).unwrap()), "dilations");
        let plain = spec([2, 2], [1, 1], PaddingSpec::Valid, 3);
        let indices = optimized(&plain, Some(i64::datum_type()), f32::fact([1, 3, 8, 8]));
        assert!(!swapped(&swap_in(indices).unwrap()), "indices");
        assert!(
            swapped(&swap_in(optimized(&plain, None, f32::fact([1, 3, 8, 8]))).unwrap()),
            "the covered case"
        );
    }
}
