//! What normlab's tests share, in one place: the device a test computes on, deterministic
//! input values, padding masks, relative errors against a tolerance, the size of a PNG, a
//! small experiment file, running the `normlab` binary in a scratch folder, and the instruction
//! sets of this CPU.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::prelude::*;
use burn::tensor::TensorData;

/// The device the tests compute on: flex (burn's CPU backend), or the wgpu backend's default
/// adapter when `NORMLAB_TEST_DEVICE=wgpu` and this crate's `wgpu` feature is on (CI runs the
/// norm crate's tests there on Mesa's software Vulkan driver, lavapipe).
pub fn device() -> Device {
    match std::env::var("NORMLAB_TEST_DEVICE").as_deref() {
        Err(_) | Ok("" | "flex") => Device::flex(),
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        Ok(other) => {
            panic!("NORMLAB_TEST_DEVICE={other}: expected flex, or wgpu with `--features wgpu`")
        }
    }
}

/// The same device with autodiff, where layers train.
pub fn train_device() -> Device {
    device().autodiff()
}

/// Values in `[-2, 2)` from their index and `seed` alone: the same on every run and thread,
/// without burn's process-wide random number generator (tests run on several threads).
pub fn values<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let count: usize = shape.iter().product();
    let data: Vec<f32> = (0..count as u64)
        .map(|i| {
            let k = (i + 1).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
            k as f32 / 250.0 - 2.0
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Normal random values from a fixed seed, through the Box-Muller transform.
pub fn normal<const D: usize>(
    shape: [usize; D],
    mean: f32,
    std: f32,
    seed: u64,
    device: &Device,
) -> Tensor<D> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let count = shape.iter().product();
    let data: Vec<f32> = (0..count)
        .map(|_| {
            let (u, v): (f32, f32) = (rng.random_range(f32::EPSILON..1.0), rng.random());
            mean + std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A padding mask `[N, steps]` for sequences of `lengths`: true at the real steps.
pub fn mask(lengths: &[usize], steps: usize, device: &Device) -> Tensor<2, Bool> {
    let flags: Vec<bool> = lengths
        .iter()
        .flat_map(|&len| (0..steps).map(move |t| t < len))
        .collect();
    Tensor::from_data(TensorData::new(flags, [lengths.len(), steps]), device)
}

/// A tensor's values.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The largest difference between `got` and `want` relative to the largest magnitude in
/// `want` (at least `floor`): how far two computations of the same tensor, which sum in
/// different orders, part.
pub fn max_relative_error<const D: usize>(got: Tensor<D>, want: Tensor<D>, floor: f32) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shapes differ");
    let scale = want.clone().abs().max().into_scalar::<f32>().max(floor);
    (got - want).abs().max().into_scalar::<f32>() / scale
}

/// The largest `|actual - expected| / (1 + |expected|)` over two equally long slices.
pub fn relative_difference(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "length differs");
    let pairs = actual.iter().zip(expected);
    pairs
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f32::max)
}

/// Fails with `what` and the worst index unless every `|actual - expected| / (1 + |expected|)`
/// is at most `tolerance` (see [`relative_difference`]).
#[track_caller]
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: length differs");
    let error = |k: usize| (actual[k] - expected[k]).abs() / (1.0 + expected[k].abs());
    let worst = (0..actual.len()).max_by(|&i, &j| error(i).total_cmp(&error(j)));
    if let Some(worst) = worst.filter(|&w| error(w) > tolerance) {
        panic!(
            "{what}: max relative error {:e} > {tolerance:e} at index {worst} of {}: got {}, \
             expected {}",
            error(worst),
            actual.len(),
            actual[worst],
            expected[worst]
        );
    }
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
pub fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR", "{}", path.display());
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Half the smallest normal `f32`, computed at run time: subnormal, or zero on a thread that
/// flushes subnormal floats. `black_box` keeps the compiler from folding it in the default float
/// mode.
pub fn halved_smallest_normal() -> f32 {
    std::hint::black_box(f32::MIN_POSITIVE) * std::hint::black_box(0.5)
}

/// A small experiment on the embedded digits: three norms (none, batch, group of 4) x batch
/// sizes 2 and 8 x seeds 0 and 1, 100 examples each.
pub const SMALL_EXPERIMENT: &str = r#"
description = "Batch norm against group norm at small batches."

[data]
set = "digits"

[model]
kind = "mlp"
hidden = [8, 8]
norm = ["none", "batch", { kind = "group", groups = 4 }]

[train]
batch_size = [2, 8]
seed = [0, 1]
lr = 0.1
samples = 100
"#;

/// A fresh empty folder under the system's temporary folder, removed when dropped; a test that
/// fails keeps it, to be looked into. It reads as the [`Path`] of the folder.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` inside the folder; the file's path.
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh [`Scratch`] folder for `name`, unique to this process and this call (tests of one
/// binary run in parallel threads).
pub fn scratch(name: &str) -> Scratch {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("normlab-{name}-{}-{call}", std::process::id()));
    // A leftover of a crashed run that had the same process id would leak its files in.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Scratch(dir)
}

/// What a run of the binary left: its exit status and everything it printed.
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Standard output, then standard error.
    pub output: String,
}

/// Runs the binary at `binary` (a test's `env!("CARGO_BIN_EXE_normlab")`) with `args` in
/// `dir`, to its end.
pub fn run(binary: &str, args: &[&str], dir: &Path) -> Finished {
    let out = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    Finished {
        status: out.status,
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

/// The instruction sets this CPU can run, narrowest first: the scalar fallback, and on x86-64
/// SSE4.2 (V2), AVX2 (V3) and AVX-512 (V4) up to what it has. A test of a loop compiled through
/// macerator's dispatch runs it on each and compares the bits.
pub fn instruction_sets() -> Vec<macerator::Arch> {
    use macerator::Arch;
    let best = Arch::detect() as u8;
    #[cfg(target_arch = "x86_64")]
    let all = vec![Arch::Scalar, Arch::V2, Arch::V3, Arch::V4];
    #[cfg(not(target_arch = "x86_64"))]
    let all = vec![Arch::detect()];
    all.into_iter().filter(|a| *a as u8 <= best).collect()
}
