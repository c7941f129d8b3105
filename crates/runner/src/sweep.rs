//! Runs an experiment's grid: checks every point before training any, skips the runs that
//! finished earlier, trains the rest (in parallel if asked), then writes the summary, the plots
//! and the report.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use burn::prelude::*;

use crate::config::{Experiment, GridPoint};
use crate::error::RunnerError;
use crate::machine::{self, Machine};
use crate::model_init::dry_run;
use crate::progress::Progress;
use crate::result_set::ResultSet;
use crate::results::{ResultsDir, RunRecord, Status, write_atomically};
use crate::shard::{self, Claimant, Shard};
use crate::tasks::Tasks;
use crate::train::TrainingThreads;
use crate::{plot, report};

/// How to run a sweep.
pub struct SweepOptions {
    /// The device runs train on (made autodiff for training).
    pub device: Device,
    /// Grid points trained at once.
    pub jobs: usize,
    /// `results/`: the experiment's results go to `results/<name>/`.
    pub results_root: PathBuf,
    /// The command line, written into the report.
    pub command: String,
    /// Train only this slice of the grid; None for all of it.
    pub shard: Option<Shard>,
}

/// Trains what is left of `experiment`'s grid and writes its results; returns the results
/// folder. Errors are for the user: a bad config or data set stops the sweep before training.
pub fn run(experiment: &Experiment, options: &SweepOptions) -> Result<PathBuf, RunnerError> {
    let started = Instant::now();
    let dir = ResultsDir::new(options.results_root.join(&experiment.name));
    claim_results_dir(&dir, experiment, &options.command)?;
    let tasks = Tasks::load(experiment)?;
    tasks.save_scalers(&dir)?;
    let jobs = options.jobs.max(1);
    let job_threads = (0..jobs)
        .map(|_| TrainingThreads::for_job(experiment, jobs))
        .collect::<Result<Vec<_>, _>>()?;
    let task_of = |point: &GridPoint| tasks.of(point);

    // Check every point that still has to run before training any.
    let mut to_train = Vec::new();
    let mut skipped = 0;
    let in_shard = |point: &&GridPoint| options.shard.is_none_or(|shard| shard.holds(&point.id));
    let points: Vec<&GridPoint> = experiment.points.iter().filter(in_shard).collect();
    for point in points.iter().copied() {
        if dir.has_run(&point.id) {
            skipped += 1;
            continue;
        }
        match dry_run(point, task_of(point), &options.device) {
            Ok(()) => to_train.push(point),
            Err(reason) => {
                println!("{}: impossible, recorded as such: {reason}", point.id);
                let mut record = RunRecord::new(point);
                record.status = Status::Impossible;
                record.reason = Some(reason.to_string());
                let path = dir.run_file(&point.id);
                dir.write_run(&record).map_err(RunnerError::io(path))?;
            }
        }
    }
    let slice = match options.shard {
        Some(shard) => format!(", {} of them in shard {shard}", points.len()),
        None => String::new(),
    };
    println!(
        "{}: {} runs in the grid{slice}, {skipped} finished earlier, {} to train on {} job(s)",
        experiment.name,
        experiment.points.len(),
        to_train.len(),
        options.jobs
    );

    if !to_train.is_empty() {
        machine::record(&dir, &Machine::this().to_string())?;
    }
    let progress = Progress::new(to_train.len());
    let claimant = Claimant::this_process(options.shard);
    let queue = Mutex::new(to_train.into_iter());
    let failure: Mutex<Option<RunnerError>> = Mutex::new(None);
    // A function, so that the queue's lock is released before the run trains: the guard of a
    // `while let` scrutinee would live through the loop's body and the jobs would take turns.
    let next_point = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    std::thread::scope(|scope| {
        for threads in &job_threads {
            scope.spawn(|| {
                let fail = |e: RunnerError| {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                };
                while let Some(point) = next_point() {
                    // Another process sharing the folder may hold it, or have finished it.
                    match shard::claim(&dir.runs(), &point.id, &claimant) {
                        Ok(true) if !dir.has_run(&point.id) => {}
                        Ok(claimed) => {
                            if claimed {
                                let _ = shard::release(&dir.runs(), &point.id);
                            }
                            progress.elsewhere();
                            continue;
                        }
                        Err(e) => return fail(RunnerError::io(dir.runs())(e)),
                    }
                    let bar = progress.start(&point.id);
                    let record =
                        threads.train(point, task_of(point), &options.device, |step, total| {
                            bar.set_length(total as u64);
                            bar.set_position(step as u64);
                        });
                    if let Err(e) = dir.write_run(&record) {
                        return fail(RunnerError::io(dir.run_file(&point.id))(e));
                    }
                    if let Err(e) = shard::release(&dir.runs(), &point.id) {
                        return fail(RunnerError::io(dir.runs())(e));
                    }
                    progress.finish(bar, &record);
                }
            });
        }
    });
    if let Some(failure) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(failure);
    }
    // A shard's or a resumed sweep's time is not the whole sweep's.
    let whole = skipped == 0 && options.shard.is_none();
    let wall = whole.then(|| started.elapsed().as_secs_f64());
    write_outputs(experiment, &dir, &options.command, wall)?;
    Ok(dir.root)
}

/// The experiment a results folder holds, read from the copy of its file kept there and named
/// after the folder.
pub(crate) fn experiment_of(dir: &ResultsDir) -> Result<Experiment, RunnerError> {
    let text =
        std::fs::read_to_string(dir.config_file()).map_err(|source| RunnerError::NotResults {
            path: dir.config_file(),
            source,
        })?;
    let name = dir
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Experiment::parse(Path::new(&format!("{name}.toml")), text)?)
}

/// Redraws the summary, plots and report of `results_dir` from its saved runs.
pub fn redraw(results_dir: &Path) -> Result<(), RunnerError> {
    let dir = ResultsDir::new(results_dir);
    let experiment = experiment_of(&dir)?;
    let (command, wall) = provenance(&dir);
    write_outputs(&experiment, &dir, &command, wall)
}

/// The report that [`redraw`] would write for `results_dir`, with its plots drawn into
/// `plot_dir` rather than beside the records: what a test compares the committed report with.
pub fn report_text(results_dir: &Path, plot_dir: &Path) -> Result<String, RunnerError> {
    let dir = ResultsDir::new(results_dir);
    let experiment = experiment_of(&dir)?;
    let (command, wall) = provenance(&dir);
    let set = ResultSet::new(&experiment, dir.read_runs(&experiment)?);
    let plots = plot::draw_all(&set, plot_dir)?;
    Ok(report::text(&set, &plots, &command, wall))
}

/// The command line a results folder was made with, and its sweep's wall time when recorded.
fn provenance(dir: &ResultsDir) -> (String, Option<f64>) {
    let command = std::fs::read_to_string(dir.root.join("command.txt")).unwrap_or_default();
    let wall = std::fs::read_to_string(dir.root.join("wall_seconds.txt"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    (command.trim().to_string(), wall)
}

/// Writes the summary, the plots and the report of `dir` from its run records.
pub(crate) fn write_outputs(
    experiment: &Experiment,
    dir: &ResultsDir,
    command: &str,
    wall: Option<f64>,
) -> Result<(), RunnerError> {
    let set = ResultSet::new(experiment, dir.read_runs(experiment)?);
    dir.write_summary(&set)?;
    let wall = wall.map(recorded_wall);
    if let Some((text, _)) = &wall {
        let path = dir.root.join("wall_seconds.txt");
        write_atomically(&path, text.as_bytes()).map_err(RunnerError::io(path))?;
    }
    let wall = wall.map(|(_, seconds)| seconds);
    let plots = plot::draw_all(&set, &dir.root)?;
    report::write(&set, &dir.root, &plots, command, wall)?;
    Ok(())
}

/// A sweep's wall time as `wall_seconds.txt` records it (a tenth of a second) and the value that
/// text reads back as. The report gives the value read back, so that the report a sweep writes
/// is the one its folder regenerates: at 2559.49 s the exact time rounds to 42 min 39 s, the
/// recorded 2559.5 to 42 min 40 s.
fn recorded_wall(seconds: f64) -> (String, f64) {
    let text = format!("{seconds:.1}");
    let value = text.parse().expect("a formatted float parses");
    (text + "\n", value)
}

/// Makes `dir` the home of `experiment`'s results: refuses results of a different config, which
/// resuming would silently mix in.
fn claim_results_dir(
    dir: &ResultsDir,
    experiment: &Experiment,
    command: &str,
) -> Result<(), RunnerError> {
    let config = dir.config_file();
    if let Ok(previous) = std::fs::read_to_string(&config)
        && previous != experiment.text
    {
        return Err(RunnerError::OtherExperiment {
            dir: dir.root.clone(),
            experiment: experiment.path.clone(),
        });
    }
    std::fs::create_dir_all(dir.runs()).map_err(RunnerError::io(dir.runs()))?;
    write_atomically(&config, experiment.text.as_bytes()).map_err(RunnerError::io(&config))?;
    let path = dir.root.join("command.txt");
    write_atomically(&path, format!("{command}\n").as_bytes()).map_err(RunnerError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_a_sweep_writes_is_the_one_its_folder_regenerates() {
        let root = normlab_testkit::scratch("wall");
        let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/smoke.toml");
        let experiment = Experiment::load(&smoke).unwrap();
        let dir = ResultsDir::new(root.join("smoke"));
        std::fs::create_dir_all(dir.runs()).unwrap();
        std::fs::write(dir.config_file(), &experiment.text).unwrap();
        let command = "normlab run smoke.toml";
        std::fs::write(dir.root.join("command.txt"), command).unwrap();
        // Its exact seconds round to 42 min 39 s; the tenth it records, to 42 min 40 s.
        write_outputs(&experiment, &dir, command, Some(2559.49)).unwrap();
        let written = std::fs::read_to_string(dir.root.join("README.md")).unwrap();
        let redrawn = root.join("redrawn");
        std::fs::create_dir_all(&redrawn).unwrap();
        assert_eq!(written, report_text(&dir.root, &redrawn).unwrap());
        assert!(written.contains("42 min 40 s"), "{written}");
    }
}
