//! The kind of CPU a results folder was trained on. A run repeats to the last bit on the same
//! kind of CPU only: burn's own sums follow the vector width and its matrix products use FMA
//! where the CPU has it (`docs/experiments.md`, "On another kind of CPU"). A sweep that trains
//! runs adds this machine to its folder's `machine.txt`; `verify` compares it with the machine
//! it retrains on.

use std::fmt;
use std::io::Write as _;
use std::path::PathBuf;

use crate::error::RunnerError;
use crate::results::ResultsDir;

/// A CPU as far as the numbers of a run depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The CPU's model name, e.g. `AMD EPYC`.
    pub cpu: String,
    /// Its widest vector instructions the kernels use: what decides the bits.
    pub vectors: &'static str,
    /// Threads the sweep could use.
    pub threads: usize,
}

impl Machine {
    /// The machine this process runs on.
    pub fn this() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            cpu,
            vectors: vectors(),
            threads,
        }
    }

    /// Whether a run trained on the machine `line` describes (a line of `machine.txt`) should
    /// repeat here to the last bit: the same vector instructions.
    pub fn same_kind_as(&self, line: &str) -> bool {
        line.split(", ").any(|part| part == self.vectors)
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {} threads",
            self.cpu, self.vectors, self.threads
        )
    }
}

#[cfg(target_arch = "x86_64")]
fn vectors() -> &'static str {
    if is_x86_feature_detected!("avx512f") {
        "AVX-512"
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        "AVX2 and FMA"
    } else {
        "no AVX2 or no FMA"
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn vectors() -> &'static str {
    std::env::consts::ARCH
}

fn machine_file(dir: &ResultsDir) -> PathBuf {
    dir.root.join("machine.txt")
}

/// Adds a machine (its line, [`Machine`]'s `Display`) to `dir`'s `machine.txt` unless it is
/// there: by a sweep with runs to train, and by `merge` for each shard's machines. (Two shards
/// starting on the same new machine at once may both add it; readers take each line once.)
pub(crate) fn record(dir: &ResultsDir, line: &str) -> Result<(), RunnerError> {
    if recorded(dir).iter().any(|l| l == line) {
        return Ok(());
    }
    let path = machine_file(dir);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"))
        .map_err(RunnerError::io(path))
}

/// The machines `dir`'s runs were trained on, each once, in the order they first trained there;
/// empty for a folder made before machines were recorded.
pub fn recorded(dir: &ResultsDir) -> Vec<String> {
    // Read leniently: a damaged file still shows what it holds rather than nothing.
    let bytes = std::fs::read(machine_file(dir)).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !lines.iter().any(|l| l == line) {
            lines.push(line.to_string());
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(cpu: &str, vectors: &'static str) -> Machine {
        Machine {
            cpu: cpu.into(),
            vectors,
            threads: 2,
        }
    }

    #[test]
    fn each_machine_is_recorded_once_in_the_order_it_first_trained() {
        let scratch = normlab_testkit::scratch("machines");
        let dir = ResultsDir::new(scratch.to_path_buf());
        assert!(recorded(&dir).is_empty());
        let (amd, intel) = (
            machine("AMD EPYC", "AVX2 and FMA"),
            machine("Xeon", "AVX-512"),
        );
        for m in [&amd, &amd, &intel, &amd] {
            record(&dir, &m.to_string()).unwrap();
        }
        assert_eq!(recorded(&dir), [amd.to_string(), intel.to_string()]);
    }

    #[test]
    fn a_damaged_file_still_shows_its_lines() {
        let scratch = normlab_testkit::scratch("machines-damaged");
        let dir = ResultsDir::new(scratch.to_path_buf());
        std::fs::write(machine_file(&dir), b"\xff\xfe CPU, AVX-512, 2 threads\n\n").unwrap();
        assert_eq!(recorded(&dir), ["\u{fffd}\u{fffd} CPU, AVX-512, 2 threads"]);
    }

    #[test]
    fn the_same_kind_means_the_same_vector_instructions() {
        let intel = machine("Intel(R) Xeon(R) Processor", "AVX-512");
        assert!(intel.same_kind_as("Another Xeon, AVX-512, 16 threads"));
        assert!(!intel.same_kind_as("AMD EPYC, AVX2 and FMA, 2 threads"));
        assert!(!intel.same_kind_as("not recorded"));
    }
}
