//! What normlab's benchmarks share: timing by medians, the machine's copy bandwidth (the
//! memory-traffic floor of a memory-bound kernel), PyTorch's times from a script run in the same
//! sitting, and the report each benchmark leaves in `results/benchmarks/`: a table printed, a
//! Markdown copy and a JSON file, with the machine and the date.
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

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
pub fn copy_bandwidth() -> f64 {
    let source = vec![1.0f32; 64 << 20];
    let mut target = vec![0.0f32; 64 << 20];
    let elapsed = median(1, 9, || target.copy_from_slice(black_box(&source)));
    black_box(&target);
    2.0 * (source.len() * 4) as f64 / elapsed.as_secs_f64()
}

/// The machine a benchmark ran on, in words: CPU model and threads.
pub fn machine() -> String {
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
pub fn pytorch(script: &str, args: &[&str]) -> Vec<Value> {
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
pub fn torch_version(lines: &[Value]) -> String {
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
/// it (bench `name` of `package`), the machine and the date, to `results/benchmarks/<name>.md`
/// and `.json` in the workspace.
pub fn finish(package: &str, name: &str, rows: &[Row], notes: &[String]) {
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
    let machine = machine();
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let notes_text: String = notes.iter().map(|n| format!("{n}\n")).collect();
    print!("{table}\n{notes_text}machine: {machine}\ndate: {date}\n");

    let dir = workspace_root().join("results/benchmarks");
    let markdown = format!(
        "# {name}\n\nMade by `cargo bench -p {package} --bench {name}` on {machine}, {date}.\n\n{table}\n{}",
        notes.iter().map(|n| format!("- {n}\n")).collect::<String>()
    );
    let json = json!({
        "benchmark": name,
        "command": format!("cargo bench -p {package} --bench {name}"),
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
        .and_then(|_| std::fs::write(dir.join(format!("{name}.md")), markdown))
        .and_then(|_| {
            let text = serde_json::to_string_pretty(&json).expect("JSON values");
            std::fs::write(dir.join(format!("{name}.json")), text + "\n")
        });
    match written {
        Ok(()) => println!(
            "written to {}",
            dir.join(format!("{name}.{{md,json}}")).display()
        ),
        Err(e) => eprintln!("{}: {e}", dir.display()),
    }
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

/// The workspace root, two levels above this crate.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}
