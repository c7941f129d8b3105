//! Runs an experiment's grid: checks every point before training any, skips the runs that
//! finished earlier, trains the rest (in parallel if asked), then writes the summary, the plots
//! and the report.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::prelude::*;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::{DataConfig, Experiment, GridPoint};
use crate::results::{ResultsDir, RunRecord, Status, write_atomically};
use crate::task::Task;
use crate::train::{dry_run, train};
use crate::{plot, report};

/// How to run a sweep.
pub struct SweepOptions {
    pub device: Device,
    /// Grid points trained at once.
    pub jobs: usize,
    /// `results/`: the experiment's results go to `results/<name>/`.
    pub results_root: PathBuf,
    /// The command line, written into the report.
    pub command: String,
}

/// Trains what is left of `experiment`'s grid and writes its results; returns the results
/// folder. Errors are for the user: a bad config or data set stops the sweep before training.
pub fn run(experiment: &Experiment, options: &SweepOptions) -> Result<PathBuf, String> {
    let started = Instant::now();
    let dir = ResultsDir::new(options.results_root.join(&experiment.name));
    claim_results_dir(&dir, experiment, &options.command)?;
    let tasks = load_tasks(experiment)?;
    save_scalers(&dir, &tasks)?;
    let task_of = |point: &GridPoint| &tasks[&data_key(&point.run.data)];

    // Check every point that still has to run before training any.
    let mut to_train = Vec::new();
    let mut skipped = 0;
    for point in &experiment.points {
        if dir.has_run(&point.id) {
            skipped += 1;
            continue;
        }
        match dry_run(point, task_of(point), &options.device) {
            Ok(()) => to_train.push(point),
            Err(reason) => {
                println!("{}: impossible, recorded as such: {reason}", point.id);
                let mut record = RunRecord::new(point, axes_of(experiment, point));
                record.status = Status::Impossible;
                record.reason = Some(reason);
                dir.write_run(&record).map_err(|e| e.to_string())?;
            }
        }
    }
    println!(
        "{}: {} runs in the grid, {skipped} finished earlier, {} to train on {} job(s)",
        experiment.name,
        experiment.points.len(),
        to_train.len(),
        options.jobs
    );

    let progress = Progress::new(to_train.len());
    let queue = Mutex::new(to_train.into_iter());
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| {
                while let Some(point) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() {
                    let bar = progress.start(&point.id);
                    let axes = axes_of(experiment, point);
                    let record = train(
                        point,
                        axes,
                        task_of(point),
                        &options.device,
                        |step, total| {
                            bar.set_length(total as u64);
                            bar.set_position(step as u64);
                        },
                    );
                    if let Err(e) = dir.write_run(&record) {
                        *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(format!("{}: {e}", dir.run_file(&point.id).display()));
                        return;
                    }
                    progress.finish(bar, &record);
                }
            });
        }
    });
    if let Some(failure) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(failure);
    }
    let wall = (skipped == 0).then(|| started.elapsed().as_secs_f64());
    write_outputs(experiment, &dir, &options.command, wall)?;
    Ok(dir.root)
}

/// Redraws the summary, plots and report of `results_dir` from its saved runs.
pub fn redraw(results_dir: &Path) -> Result<(), String> {
    let dir = ResultsDir::new(results_dir);
    let text = std::fs::read_to_string(dir.config_file()).map_err(|e| {
        format!(
            "{}: {e} (is this a results folder?)",
            dir.config_file().display()
        )
    })?;
    let name = results_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let experiment =
        Experiment::parse(Path::new(&format!("{name}.toml")), text).map_err(|e| e.to_string())?;
    let command = std::fs::read_to_string(dir.root.join("command.txt")).unwrap_or_default();
    let wall = std::fs::read_to_string(dir.root.join("wall_seconds.txt"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    write_outputs(&experiment, &dir, command.trim(), wall)
}

fn write_outputs(
    experiment: &Experiment,
    dir: &ResultsDir,
    command: &str,
    wall: Option<f64>,
) -> Result<(), String> {
    let records = dir.read_runs(experiment)?;
    dir.write_summary(experiment, &records)?;
    if let Some(wall) = wall {
        write_atomically(
            &dir.root.join("wall_seconds.txt"),
            format!("{wall:.1}\n").as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    }
    let plots = plot::draw_all(experiment, &records, &dir.root)?;
    report::write(experiment, &records, &dir.root, &plots, command, wall)?;
    Ok(())
}

/// Makes `dir` the home of `experiment`'s results: refuses results of a different config, which
/// resuming would silently mix in.
fn claim_results_dir(
    dir: &ResultsDir,
    experiment: &Experiment,
    command: &str,
) -> Result<(), String> {
    let config = dir.config_file();
    if let Ok(previous) = std::fs::read_to_string(&config)
        && previous != experiment.text
    {
        return Err(format!(
            "{} holds results of a different version of {}; move that folder away or delete it \
             to start over",
            dir.root.display(),
            experiment.path.display()
        ));
    }
    let io = |e: std::io::Error| format!("{}: {e}", dir.root.display());
    std::fs::create_dir_all(dir.runs()).map_err(io)?;
    write_atomically(&config, experiment.text.as_bytes()).map_err(io)?;
    write_atomically(
        &dir.root.join("command.txt"),
        format!("{command}\n").as_bytes(),
    )
    .map_err(io)
}

fn data_key(config: &DataConfig) -> String {
    serde_json::to_string(config).expect("data configs serialize")
}

/// Loads each distinct data config once.
fn load_tasks(experiment: &Experiment) -> Result<HashMap<String, Task>, String> {
    let mut tasks = HashMap::new();
    for point in &experiment.points {
        let key = data_key(&point.run.data);
        if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(key) {
            let task = Task::load(&point.run.data)
                .map_err(|e| format!("{}: [data]: {e}", experiment.path.display()))?;
            slot.insert(task);
        }
    }
    Ok(tasks)
}

/// Writes each fitted input scaler beside the results (`scaler.json`, or `scaler-<k>.json` when
/// the grid varies the data), so the numbers a model was trained with can be applied again.
fn save_scalers(dir: &ResultsDir, tasks: &HashMap<String, Task>) -> Result<(), String> {
    let mut keys: Vec<&String> = tasks
        .keys()
        .filter(|k| tasks[*k].scaler.is_some())
        .collect();
    keys.sort();
    for (k, key) in keys.iter().enumerate() {
        let name = match keys.len() {
            1 => "scaler.json".to_string(),
            _ => format!("scaler-{k}.json"),
        };
        let json = serde_json::json!({ "data": serde_json::from_str::<serde_json::Value>(key)
            .map_err(|e| e.to_string())?, "scaler": tasks[*key].scaler });
        let path = dir.root.join(name);
        let bytes = serde_json::to_vec_pretty(&json).map_err(|e| e.to_string())?;
        write_atomically(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn axes_of(experiment: &Experiment, point: &GridPoint) -> Vec<(String, String)> {
    experiment
        .axes
        .iter()
        .map(|a| a.name.clone())
        .zip(point.labels.iter().cloned())
        .collect()
}

/// Progress bars on a terminal (the grid, and each run in flight, with ETAs); a plain line per
/// finished run otherwise.
struct Progress {
    bars: MultiProgress,
    grid: ProgressBar,
    terminal: bool,
}

impl Progress {
    fn new(runs: usize) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bars = MultiProgress::with_draw_target(match terminal {
            true => ProgressDrawTarget::stderr(),
            false => ProgressDrawTarget::hidden(),
        });
        let grid = bars.add(ProgressBar::new(runs as u64));
        grid.set_style(
            ProgressStyle::with_template("grid {bar:30} {pos}/{len} runs, eta {eta}")
                .expect("valid template"),
        );
        grid.enable_steady_tick(Duration::from_millis(500));
        Self {
            bars,
            grid,
            terminal,
        }
    }

    fn start(&self, id: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("{msg:40!} {bar:30} {pos}/{len} steps, eta {eta}")
                .expect("valid template"),
        );
        bar.set_message(id.to_string());
        bar
    }

    fn finish(&self, bar: ProgressBar, record: &RunRecord) {
        bar.finish_and_clear();
        self.grid.inc(1);
        let outcome = match (record.status, record.final_eval()) {
            (Status::Finished, Some(eval)) => {
                format!("valid error {:.2}%", eval.valid_error * 100.0)
            }
            (status, _) => format!("{status:?}: {}", record.reason.as_deref().unwrap_or("")),
        };
        let line = format!(
            "[{}/{}] {}: {outcome} ({:.1} s)",
            self.grid.position(),
            self.grid.length().unwrap_or(0),
            record.id,
            record.wall_seconds
        );
        match self.terminal {
            true => self.bars.println(line).unwrap_or(()),
            false => println!("{line}"),
        }
    }
}
