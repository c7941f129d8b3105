//! What normlab's benchmarks share: the device a benchmark runs on (`--device flex|wgpu` on its
//! command line), timing by medians with the device synchronised inside the timed region, the
//! device's copy bandwidth (the memory-traffic floor of a memory-bound kernel), PyTorch's times
//! from a script run in the same sitting (on the CPU, or on CUDA beside a GPU), and the report each
//! benchmark leaves in `results/benchmarks/`: a table printed, a Markdown copy and a JSON file,
//! with the machine and the date.
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use burn::prelude::*;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

/// The backend a benchmark runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// burn's CPU backend, with normlab's flex kernels.
    Flex,
    /// burn's wgpu backend (a GPU, or lavapipe without one), with normlab's CubeCL kernels;
    /// needs the bench crate's `wgpu` feature.
    Wgpu,
}

/// A benchmark's command line (after `cargo bench -p ... --bench ... --`).
#[derive(Parser)]
struct Args {
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    device: Backend,
    /// Check that the bench runs end to end: one timed run of every measurement, its smaller
    /// shapes only, and no report written (what it measures is worth nothing).
    #[arg(long)]
    check: bool,
    /// What `cargo bench` passes to every benchmark binary.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Where a benchmark computes and how it times there: the device (with autodiff), synchronised
/// at the end of every timed call, so that a lazy or asynchronous backend's work is inside the
/// time.
pub struct Target {
    backend: Backend,
    /// The device the bench's tensors and models live on (autodiff on top).
    pub device: Device,
    /// A check run (`--check`): one timed run each, the smaller shapes, nothing written.
    pub check: bool,
}

impl Target {
    /// The target named on the command line. A name this build cannot run (wgpu without the
    /// `wgpu` feature) or a malformed line is an error, with the usage.
    pub fn from_args() -> Result<Self, ExitCode> {
        let args = Args::try_parse().map_err(|e| {
            let _ = e.print();
            ExitCode::from(2)
        })?;
        let device = match args.device {
            Backend::Flex => Device::flex(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => {
                eprintln!("--device wgpu: build the bench with `--features wgpu`");
                return Err(ExitCode::from(2));
            }
        };
        Ok(Self {
            backend: args.device,
            device: device.autodiff(),
            check: args.check,
        })
    }

    /// The backend named on the command line.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The number of timed runs of a measurement: the bench's own `default`, or one in a check
    /// run.
    pub fn runs(&self, default: usize) -> usize {
        match self.check {
            true => 1,
            false => default,
        }
    }

    /// How long `run` takes, from the device idle to the device done with what it queued, and
    /// what it returned.
    pub fn time<T>(&self, run: impl FnOnce() -> T) -> (Duration, T) {
        self.sync();
        let start = Instant::now();
        let value = run();
        self.sync();
        (start.elapsed(), value)
    }

    /// The median of [`runs`](Self::runs) timed calls of `run`, after `warmup` untimed ones.
    /// Each call ends with the device synchronised while what `run` returned is still held: a
    /// lazy backend (burn's fusion on wgpu) may skip work whose output is dropped unread.
    pub fn median<T>(&self, warmup: usize, runs: usize, mut run: impl FnMut() -> T) -> Duration {
        self.sync();
        median(warmup, self.runs(runs), || {
            let output = run();
            self.sync();
            black_box(output);
        })
    }

    fn sync(&self) {
        self.device
            .sync()
            .expect("the device runs the benchmark's ops");
    }

    /// Copy bandwidth in bytes (read plus written) per second on this device: a single `memcpy`
    /// of a buffer far larger than the caches on the CPU, one element-wise copy kernel of a
    /// 96 MiB tensor on a GPU (96 MiB read and 96 MiB written per copy, more than a GPU's L2
    /// cache holds; lavapipe, CI's software Vulkan, cannot allocate 128 MiB at once).
    pub fn copy_bandwidth(&self) -> f64 {
        const FLOATS: usize = 24 << 20;
        match self.backend {
            Backend::Flex => copy_bandwidth(),
            Backend::Wgpu => {
                let source = Tensor::<1>::ones([FLOATS], &self.device.clone().inner());
                let copy = || source.clone().mul_scalar(1.0);
                let elapsed = self.median(1, 9, copy);
                Self::ran(copy());
                2.0 * (FLOATS * 4) as f64 / elapsed.as_secs_f64()
            }
        }
    }

    /// Reads one value of `output` back, so that a device that failed to run what made it (a
    /// buffer too large, a kernel that did not compile) says so: burn's `sync` does not.
    pub fn ran<const D: usize>(output: Tensor<D>) {
        if let Err(e) = output.sum().try_into_data() {
            panic!("the device did not run the benchmark's ops: {e}");
        }
    }

    /// The machine in words: the CPU and its threads, or the GPU's adapter as it names itself.
    pub fn machine(&self) -> String {
        match self.backend {
            Backend::Flex => machine(),
            Backend::Wgpu => self.gpu_name(),
        }
    }

    #[cfg(feature = "wgpu")]
    fn gpu_name(&self) -> String {
        let name = self.device.identity().map(|id| id.name);
        format!(
            "{} (wgpu)",
            name.unwrap_or_else(|| "unnamed adapter".into())
        )
    }

    #[cfg(not(feature = "wgpu"))]
    fn gpu_name(&self) -> String {
        unreachable!("a wgpu target is refused without the wgpu feature")
    }

    /// PyTorch's measurements from `script` with `args`, on the same kind of device: the CPU
    /// with this machine's threads for flex, CUDA for wgpu (empty when no CUDA is there).
    pub fn pytorch(&self, script: &str, args: &[&str]) -> Vec<Value> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = threads.to_string();
        let device: [&str; 2] = match self.backend {
            Backend::Flex => ["--threads", &threads],
            Backend::Wgpu => ["--device", "cuda"],
        };
        pytorch(script, &[&device[..], args].concat())
    }

    /// The note that says what PyTorch's column is, from its script's `lines`.
    pub fn pytorch_note(&self, lines: &[Value], script: &str) -> String {
        match (lines.is_empty(), self.backend) {
            (true, Backend::Flex) => {
                "PyTorch: not measured (no Python with torch found; set NORMLAB_PYTHON).".into()
            }
            (true, Backend::Wgpu) => {
                "PyTorch: not measured (no Python with CUDA torch found; set NORMLAB_PYTHON)."
                    .into()
            }
            (false, Backend::Flex) => format!(
                "PyTorch: {} on the CPU with as many threads, the same shapes ({script}).",
                torch_version(lines)
            ),
            (false, Backend::Wgpu) => format!(
                "PyTorch: {} on CUDA ({}), the same shapes ({script}).",
                torch_version(lines),
                lines
                    .iter()
                    .find_map(|l| l["cuda_device"].as_str())
                    .unwrap_or("?")
            ),
        }
    }

    /// [`finish`] for this target: the report of a wgpu run goes to `<name>_wgpu.{md,json}`,
    /// beside the CPU's, with the GPU as its machine. A check run's is printed only.
    pub fn finish(&self, package: &str, name: &str, rows: &[Row], notes: &[String]) {
        let (file, flag) = match self.backend {
            Backend::Flex => (name.to_string(), String::new()),
            Backend::Wgpu => (format!("{name}_wgpu"), " -- --device wgpu".to_string()),
        };
        let report = Report {
            command: format!("cargo bench -p {package} --bench {name}{flag}"),
            file,
            machine: self.machine(),
            write: !self.check,
        };
        report.finish(rows, notes);
    }
}

/// The median of `runs` timed calls of `run`, after `warmup` untimed ones.
pub fn median(warmup: usize, runs: usize, mut run: impl FnMut()) -> Duration {
    for _ in 0..warmup {
        run();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Copy bandwidth in bytes (read plus written) per second, of a buffer far larger than the
/// caches, as a single `memcpy` reaches it.
fn copy_bandwidth() -> f64 {
    let source = vec![1.0f32; 64 << 20];
    let mut target = vec![0.0f32; 64 << 20];
    let elapsed = median(1, 9, || target.copy_from_slice(black_box(&source)));
    black_box(&target);
    2.0 * (source.len() * 4) as f64 / elapsed.as_secs_f64()
}

/// The machine a benchmark ran on, in words: CPU model and threads.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {threads} threads")
}

/// The JSON lines a PyTorch script prints (one object per measurement), run with `args` by the
/// Python in `NORMLAB_PYTHON` or else `python3`; empty when neither has torch or the script
/// fails, with the reason on standard error. `script` is relative to the workspace root.
fn pytorch(script: &str, args: &[&str]) -> Vec<Value> {
    let python = std::env::var("NORMLAB_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = workspace_root().join(script);
    let output = Command::new(&python).arg(&path).args(args).output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
        Ok(out) => {
            let reason = String::from_utf8_lossy(&out.stderr);
            let last = reason.lines().last().unwrap_or("no output");
            eprintln!("PyTorch not measured: {python} {}: {last}", path.display());
            Vec::new()
        }
        Err(e) => {
            eprintln!("PyTorch not measured: {python}: {e}");
            Vec::new()
        }
    }
}

/// The torch version the script reported (a line `{"torch": "..."}`), or `?`.
fn torch_version(lines: &[Value]) -> String {
    lines
        .iter()
        .find_map(|l| l["torch"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// One line of a benchmark's table: what was measured and its times in milliseconds (`None`
/// where not measured).
pub struct Row {
    /// Labels such as the layer and shape, in column order.
    pub fields: Vec<(&'static str, String)>,
    /// Measurements, in column order.
    pub values: Vec<(&'static str, Option<f64>)>,
}

/// Prints the table of `rows` with `notes` under it and writes it, with the command that made
/// it (bench `name` of `package`, on the CPU), the machine and the date, to
/// `results/benchmarks/<name>.md` and `.json` in the workspace.
pub fn finish(package: &str, name: &str, rows: &[Row], notes: &[String]) {
    let report = Report {
        command: format!("cargo bench -p {package} --bench {name}"),
        file: name.to_string(),
        machine: machine(),
        write: true,
    };
    report.finish(rows, notes);
}

/// Where a benchmark's table goes and what it says made it.
struct Report {
    command: String,
    /// The file stem under `results/benchmarks/`.
    file: String,
    machine: String,
    /// False for a check run (`--check`): printed, not written.
    write: bool,
}

impl Report {
    fn finish(&self, rows: &[Row], notes: &[String]) {
        let table = table(rows);
        let Self {
            command,
            file,
            machine,
            ..
        } = self;
        let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let notes_text: String = notes.iter().map(|n| format!("{n}\n")).collect();
        print!("{table}\n{notes_text}machine: {machine}\ndate: {date}\n");
        if !self.write {
            println!("not written: a check run (--check)");
            return;
        }
        let dir = workspace_root().join("results/benchmarks");
        let markdown = format!(
            "# {file}\n\nMade by `{command}` on {machine}, {date}.\n\n{table}\n{}",
            notes.iter().map(|n| format!("- {n}\n")).collect::<String>()
        );
        let json = json!({
            "benchmark": file,
            "command": command,
            "machine": machine,
            "date": date,
            "notes": notes,
            "rows": rows.iter().map(|row| {
                let mut object = serde_json::Map::new();
                for (k, v) in &row.fields {
                    object.insert(k.to_string(), json!(v));
                }
                for (k, v) in &row.values {
                    object.insert(k.to_string(), json!(v));
                }
                Value::Object(object)
            }).collect::<Vec<_>>(),
        });
        let written = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(dir.join(format!("{file}.md")), markdown))
            .and_then(|_| {
                let text = serde_json::to_string_pretty(&json).expect("JSON values");
                std::fs::write(dir.join(format!("{file}.json")), text + "\n")
            });
        match written {
            Ok(()) => println!(
                "written to {}",
                dir.join(format!("{file}.{{md,json}}")).display()
            ),
            Err(e) => eprintln!("{}: {e}", dir.display()),
        }
    }
}

/// The Markdown table of `rows`, right-aligned in columns.
fn table(rows: &[Row]) -> String {
    let mut header: Vec<&str> = Vec::new();
    if let Some(first) = rows.first() {
        header.extend(first.fields.iter().map(|(k, _)| *k));
        header.extend(first.values.iter().map(|(k, _)| *k));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let labels = row.fields.iter().map(|(_, v)| v.clone());
            let values = row.values.iter().map(|(_, v)| match v {
                Some(v) => format_value(*v),
                None => "n/a".into(),
            });
            labels.chain(values).collect()
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut table = format!("{}\n", line(&head));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let _ = writeln!(table, "{}", line(&rule));
    for row in &cells {
        let _ = writeln!(table, "{}", line(row));
    }
    table
}

/// Three significant digits, fixed-point.
fn format_value(value: f64) -> String {
    match value.abs() {
        0.0 => "0".into(),
        v if v < 0.01 => format!("{value:.1e}"),
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        _ => format!("{value:.2}"),
    }
}

/// The workspace root: `NORMLAB_ROOT` when set (a bench binary run away from the checkout it was
/// built in, as `scripts/gpu-bench.sh` does), else two levels above this crate.
fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("NORMLAB_ROOT") {
        return root.into();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}
