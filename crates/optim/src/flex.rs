//! The fused update on flex: one pass over contiguous copies (the tensors themselves where
//! nothing else holds them), in parallel over blocks of values, each block on the CPU's widest
//! vectors.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use crate::{AdamOps, AdamStep};

/// Values per parallel task: 64 KiB of each of the four arrays. Each value's update reads and
/// writes that value alone, so the blocks change no bit.
const BLOCK: usize = 1 << 14;

/// [`AdamStep::apply`] to every value of a block, compiled for the widest vectors the CPU has
/// (picked at run time, as flex does): the same operations on every value, each correctly
/// rounded (a multiply and an add stay two roundings), so every width gives the same bits.
// `S` is the instruction set the body is compiled for: scalar code the compiler vectorizes.
#[allow(clippy::extra_unused_type_parameters)]
#[macerator::with_simd]
fn update_block<'a, S: macerator::Simd>(
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    step: &'a AdamStep,
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        step.apply(p, g, m, v);
    }
}

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
            update_block(p, g, m, v, &step)
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

#[cfg(test)]
mod tests {
    use macerator::{Arch, Simd, WithSimd};
    use normlab_testkit::instruction_sets;

    use super::*;
    use crate::AdamConfig;

    /// `len` values of all signs and scales, with zeros of both signs and subnormals.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| match i % 7 {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-40,
                _ => {
                    let k = (i + 1).wrapping_mul(2_654_435_761).wrapping_add(seed * 97) % 2000;
                    (k as f32 / 1000.0 - 1.0) * 10f32.powi((i % 5) as i32 - 2)
                }
            })
            .collect()
    }

    /// One block's update on instruction set `arch`: the parameters and moments it leaves.
    fn updated(arch: Arch, start: [&[f32]; 4], step: AdamStep) -> [Vec<u32>; 3] {
        struct Update<'a> {
            p: &'a mut [f32],
            g: &'a [f32],
            m: &'a mut [f32],
            v: &'a mut [f32],
            step: &'a AdamStep,
        }
        impl WithSimd for Update<'_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: Simd>(self) {
                update_block_impl::<S>(self.p, self.g, self.m, self.v, self.step)
            }
        }
        let [p, g, m, v] = start;
        let (mut p, mut m, mut v) = (p.to_vec(), m.to_vec(), v.to_vec());
        let update = Update {
            p: &mut p,
            g,
            m: &mut m,
            v: &mut v,
            step: &step,
        };
        // SAFETY: `instruction_sets` lists only instruction sets this CPU has.
        unsafe { arch.dispatch(update) };
        [p, m, v].map(|values| values.into_iter().map(f32::to_bits).collect())
    }

    /// Every instruction set gives the scalar loop's bits, on lengths of no value, one value
    /// and one off every vector width (4, 8, 16 `f32`); on the first step and a later one, with
    /// and without weight decay.
    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        assert!(!instruction_sets().is_empty());
        for len in [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 1001] {
            let [p, g, m, v] = [1, 2, 3, 4].map(|seed| values(len, seed));
            let v: Vec<f32> = v.iter().map(|v| v.abs()).collect();
            for weight_decay in [None, Some(1e-2)] {
                let config = AdamConfig::default().with_weight_decay(weight_decay);
                for (time, first) in [(1, true), (7, false)] {
                    let step = AdamStep::new(&config, time, 1e-3, first);
                    let results: Vec<(Arch, [Vec<u32>; 3])> = instruction_sets()
                        .into_iter()
                        .map(|arch| (arch, updated(arch, [&p, &g, &m, &v], step)))
                        .collect();
                    let (scalar, want) = &results[0];
                    for (arch, got) in &results[1..] {
                        assert!(
                            got == want,
                            "{len} values, step {time}, decay {weight_decay:?}: {arch:?} \
                             differs from {scalar:?}"
                        );
                    }
                }
            }
        }
    }
}
