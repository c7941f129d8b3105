//! The fused update on flex: one pass over contiguous copies (the tensors themselves where
//! nothing else holds them), in parallel over blocks of values.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use crate::{AdamOps, AdamStep};

/// Values per parallel task: 64 KiB of each of the four arrays. Each value's update reads and
/// writes that value alone, so the blocks change no bit.
const BLOCK: usize = 1 << 14;

impl AdamOps for Flex {
    fn adam_update(
        param: FlexTensor,
        grad: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        step: AdamStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [mut param, grad, mut m, mut v] = [param, grad, m, v].map(|t| t.to_contiguous());
        let g = grad.storage::<f32>();
        // `storage_mut` copies a buffer something else still holds (the first step's stand-in
        // moments share the gradient's), and writes in place otherwise.
        let (p, ms, vs) = (
            param.storage_mut::<f32>(),
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
        );
        assert!(
            p.len() == g.len() && ms.len() == g.len() && vs.len() == g.len(),
            "adam_update: the parameter ({}), gradient ({}) and moments ({}, {}) differ in size",
            p.len(),
            g.len(),
            ms.len(),
            vs.len()
        );
        let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                step.apply(p, g, m, v);
            }
        };
        if g.len() <= BLOCK {
            update(p, g, ms, vs);
        } else {
            p.par_chunks_mut(BLOCK)
                .zip(g.par_chunks(BLOCK))
                .zip(ms.par_chunks_mut(BLOCK))
                .zip(vs.par_chunks_mut(BLOCK))
                .for_each(|(((p, g), m), v)| update(p, g, m, v));
        }
        (param, m, v)
    }
}
