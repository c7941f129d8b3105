//! Subnormal floats, and a thread pool whose threads read and write them as zero.
//!
//! A float below the smallest normal value (1.18e-38 in `f32`) is subnormal. On x86 CPUs every
//! instruction that reads or writes one takes a microcode assist, up to a hundred times slower
//! than the same instruction on normal values. Long training runs meet them: where a unit's
//! gradient stays zero, SGD's momentum buffer and Adam's moments decay geometrically through
//! the subnormal range, and every step multiplies each of them again. On the project's 2-core
//! Xeon a step of the 784-256-256-10 MLP at batch 2 grows several times slower over a few
//! thousand steps, and keeps its speed with subnormals flushed (`examples/profile_step.rs`
//! measures both).
//!
//! Flushing is IEEE 754's one licensed departure for speed: a result that would be subnormal
//! becomes zero, and a subnormal input is read as zero. It changes a run's numbers wherever a
//! value passes through that range, so it is a setting of the run, recorded with it:
//! [`Subnormals::Keep`] (PyTorch's default) or [`Subnormals::Flush`] (TensorFlow's).
//!
//! The flag lives in each thread's floating-point control register (MXCSR on x86, FPCR on
//! aarch64), so a run that flushes must do all its arithmetic on threads that set it: its own
//! and the ones its parallel ops use. [`FlushingPool`] is a rayon pool whose threads set it for
//! their whole life; [`FlushingPool::install`] runs a closure there, and rayon sends every
//! parallel op inside it (burn-flex's, gemm's and the norm crate's kernels) to the same
//! threads. The process's other threads, rayon's global pool among them, keep the default.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How a run's arithmetic treats subnormal floats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subnormals {
    /// IEEE 754's gradual underflow: subnormal values are computed exactly, at the CPU's slow
    /// path for them. The default, as in PyTorch.
    #[default]
    Keep,
    /// Subnormal inputs read as zero and subnormal results written as zero: x86's
    /// flush-to-zero and denormals-are-zero flags, aarch64's flush-to-zero. Run the work in a
    /// [`FlushingPool`].
    Flush,
}

/// Why a [`FlushingPool`] could not be made.
#[derive(Debug, Error)]
pub enum FlushError {
    /// The CPU architecture has no flag this crate knows how to set.
    #[error("flushing subnormal floats needs an x86 or aarch64 CPU; this one is {0}")]
    Unsupported(&'static str),
    /// The operating system would not start the pool's threads.
    #[error("could not start the threads that flush subnormal floats: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

/// A rayon thread pool whose threads flush subnormal floats to zero for as long as they live.
///
/// It has as many threads as rayon's global pool would (`RAYON_NUM_THREADS`, else one per
/// core), so the kernels split their work the same way in both pools.
#[derive(Debug)]
pub struct FlushingPool {
    pool: rayon::ThreadPool,
}

impl FlushingPool {
    /// Starts the pool's threads.
    #[cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64"))]
    pub fn new() -> Result<Self, FlushError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|index| format!("normlab-flush-{index}"))
            .spawn_handler(|thread| {
                let mut builder = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    builder = builder.name(name.to_string());
                }
                if let Some(size) = thread.stack_size() {
                    builder = builder.stack_size(size);
                }
                // SAFETY: `no_denormals` sets the flush flags of this new thread's control
                // register for the closure, that is for the thread's whole life as a rayon
                // worker, and restores them after it. Rust's documentation calls a changed
                // float mode undefined behaviour because the compiler assumes the default when
                // it folds float constants: a folded expression may keep a subnormal value the
                // running code would flush. Nothing the workers run rests its memory safety on
                // a float's value: an index computed from floats (an argmax, a percentile's
                // position) goes through safe, bounds-checked code, so such a difference
                // changes numbers, never memory. The float-mode tests below check that the
                // flag reaches every worker and no other thread.
                builder.spawn(move || unsafe { no_denormals::no_denormals(|| thread.run()) })?;
                Ok(())
            })
            .build()?;
        Ok(Self { pool })
    }

    /// Starts the pool's threads.
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn new() -> Result<Self, FlushError> {
        Err(FlushError::Unsupported(std::env::consts::ARCH))
    }

    /// Runs `work` on one of the pool's threads, with every parallel op inside it on the pool
    /// too, and returns its result.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.pool.install(work)
    }

    /// How many threads the pool has.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use normlab_testkit::halved_smallest_normal;
    use rayon::prelude::*;

    use super::*;

    #[test]
    fn the_pool_flushes_on_every_thread_and_nowhere_else() {
        let pool = FlushingPool::new().unwrap();
        assert!(halved_smallest_normal().is_subnormal(), "before");
        assert_eq!(pool.install(halved_smallest_normal), 0.0);
        // Every worker, not only the one `install` lands on.
        let per_thread = pool.install(|| rayon::broadcast(|_| halved_smallest_normal()));
        assert_eq!(per_thread, vec![0.0; pool.threads()]);
        // The parallel ops a run's kernels use stay on the pool.
        let sums: Vec<f32> = pool.install(|| {
            (0..64)
                .into_par_iter()
                .map(|_| halved_smallest_normal())
                .collect()
        });
        assert!(sums.iter().all(|&x| x == 0.0));
        // A subnormal input is read as zero, not only a subnormal result written as one.
        let tiny = black_box(f32::from_bits(1));
        assert_eq!(pool.install(|| black_box(tiny) * black_box(2.0)), 0.0);
        // The calling thread and rayon's global pool keep gradual underflow.
        assert!(halved_smallest_normal().is_subnormal(), "after");
        let global: Vec<f32> = rayon::broadcast(|_| halved_smallest_normal());
        assert!(global.iter().all(|x| x.is_subnormal()));
    }

    #[test]
    fn the_pool_is_as_wide_as_the_global_one() {
        let pool = FlushingPool::new().unwrap();
        assert_eq!(pool.threads(), rayon::current_num_threads());
    }

    #[test]
    fn the_setting_reads_from_its_names() {
        #[derive(Deserialize)]
        struct Holder {
            subnormals: Subnormals,
        }
        let read = |name: &str| {
            serde_json::from_str::<Holder>(&format!("{{\"subnormals\": \"{name}\"}}"))
                .map(|h| h.subnormals)
        };
        assert_eq!(read("keep").unwrap(), Subnormals::Keep);
        assert_eq!(read("flush").unwrap(), Subnormals::Flush);
        assert!(read("zero").is_err());
        assert_eq!(Subnormals::default(), Subnormals::Keep);
    }
}
