//! `normlab`: train the grid an experiment file describes, check it without training, or redraw
//! its plots and report.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::*;
use clap::{Parser, Subcommand, ValueEnum};
use normlab_runner::config::Experiment;
use normlab_runner::shard::Shard;
use normlab_runner::sweep::{self, SweepOptions};
use normlab_runner::{RunnerError, check, compare, merge, verify};

// Training allocates activation-sized buffers at every step; mimalloc hands freed ones back
// where the system allocator returns them to the kernel and page-faults them in again, which
// costs more than some layers' arithmetic (benches/norm_layers.rs measures with it too).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_t`, the same in mimalloc 2 and 3;
/// `libmimalloc-sys` names it only in mimalloc 2's terms).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the memory mimalloc frees for the process to reuse, instead of handing it back to the
/// kernel a second after it was freed. An evaluation on long text windows or a PreciseBN pass
/// takes hundreds of megabytes for a few seconds, once per evaluation; given back, it came back
/// as fresh pages the kernel zeroes again. A normlab process runs one sweep and exits, so it
/// keeps at most its peak. Measured on the AMD EPYC, wall time with it against without (median
/// of 3 pairs): 0.83 on a reduced `recurrent_text` run, whose evaluations take most of its time;
/// 0.91 on a one-epoch `recurrent` run at batch 4 (the same setting from the environment); 0.97
/// on a training-bound LSTM run. It changes where numbers are stored, never a number.
#[cfg(feature = "mimalloc")]
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores a value in mimalloc's option table; it is called before
    // any thread is started, and -1 ("never purge") is a documented value of this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[derive(Parser)]
#[command(version, about = "Normalization experiments on burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the grid of an experiment file; finished runs are kept and skipped.
    Run {
        /// e.g. experiments/quick.toml
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
        /// Grid points trained at once (at least 1).
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        jobs: usize,
        /// Results go to a folder named after the experiment inside this one.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Train only the I-th of N slices of the grid (0 <= I < N), e.g. `--shard 0/4`;
        /// processes may share the results folder or write their own, merged afterwards.
        #[arg(long)]
        shard: Option<Shard>,
    },
    /// Merge the results folders of one experiment's shards into one, and draw its plots and
    /// report.
    Merge {
        /// e.g. shards/0/small_batch shards/1/small_batch
        #[arg(required = true, num_args = 1..)]
        folders: Vec<PathBuf>,
        /// The merged results folder, e.g. results/small_batch.
        #[arg(long)]
        out: PathBuf,
    },
    /// Parse an experiment file, expand its grid, dry-run every point and estimate the time,
    /// without training.
    Check {
        /// e.g. experiments/small_batch.toml
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
    },
    /// Draw the runs of several results folders into the same plots and one table.
    Compare {
        /// e.g. results/small_batch results/ghost_batch
        #[arg(required = true, num_args = 1..)]
        folders: Vec<PathBuf>,
        /// Keep only the runs whose AXIS has VALUE, e.g. `--only batch_size=2` (repeatable).
        #[arg(long, value_parser = axis_value)]
        only: Vec<(String, String)>,
        /// Where the plots and README.md go.
        #[arg(long, default_value = "comparison")]
        out: PathBuf,
    },
    /// Retrain grid points of a results folder on this machine: run by run, the committed and
    /// the new error, and whether the report's headline verdict still holds (exit status 1 if
    /// it does not).
    Verify {
        /// e.g. results/quick
        results: PathBuf,
        /// How many grid points (default: the verdict's runs and one of every norm at every
        /// batch size).
        #[arg(long, value_parser = at_least_one)]
        runs: Option<usize>,
        #[arg(long, value_enum, default_value_t = Backend::Flex)]
        device: Backend,
    },
    /// Write the README's results section from the results folders: each experiment's design,
    /// computed verdict or findings, key plot and report link, between the section's markers.
    Readme {
        /// The README to update.
        #[arg(long, default_value = "README.md")]
        readme: PathBuf,
        /// The folder of the results folders.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// The folder of the experiment files; those without results are listed as not run.
        #[arg(long, default_value = "experiments")]
        experiments: PathBuf,
    },
    /// Redraw the summary, plots and report of a results folder without training.
    Plot {
        /// e.g. results/quick
        results: PathBuf,
    },
}

/// A count of at least one, as `--jobs` and `--runs` take it.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 would do nothing: give 1 or more".into()),
        Ok(count) => Ok(count),
        Err(e) => Err(format!("{text:?} is not a count: {e}")),
    }
}

/// `AXIS=VALUE`, as `--only` takes it.
fn axis_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(axis, value)| (axis.trim().to_string(), value.trim().to_string()))
        .ok_or_else(|| format!("expected AXIS=VALUE, e.g. batch_size=2, got {text:?}"))
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// burn's CPU backend.
    Flex,
    /// Deprecated in burn 0.22; needs `--features ndarray`.
    Ndarray,
    /// GPU through wgpu; needs `--features wgpu`.
    Wgpu,
}

impl Backend {
    fn device(self) -> Result<Device, RunnerError> {
        match self {
            Self::Flex => Ok(Device::flex()),
            // Deprecated upstream in burn 0.22, still offered for comparison with older results.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Self::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => {
                let name = other
                    .to_possible_value()
                    .expect("named")
                    .get_name()
                    .to_string();
                Err(RunnerError::NoBackend { name })
            }
        }
    }
}

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), RunnerError> {
    match cli.command {
        Command::Run {
            config,
            device,
            jobs,
            results,
            shard,
        } => {
            let experiment = Experiment::load(&config)?;
            // The command a reader can paste to reproduce the results, in this build's profile.
            let profile = if cfg!(debug_assertions) {
                ""
            } else {
                " --release"
            };
            let command = format!(
                "cargo run{profile} -- {}",
                std::env::args().skip(1).collect::<Vec<_>>().join(" ")
            );
            let options = SweepOptions {
                device: device.device()?,
                jobs,
                results_root: results,
                command,
                shard,
            };
            let started = std::time::Instant::now();
            let dir = sweep::run(&experiment, &options)?;
            println!(
                "results, plots and report in {} (the sweep took {:.0} s)",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Check { config, device } => {
            let experiment = Experiment::load(&config)?;
            println!("{}", check::check(&experiment, &device.device()?)?);
            Ok(())
        }
        Command::Compare { folders, only, out } => {
            let runs = compare::compare(&folders, &only, &out)?;
            println!(
                "{runs} runs compared: plots and README.md in {}",
                out.display()
            );
            Ok(())
        }
        Command::Merge { folders, out } => {
            let runs = merge::merge(&folders, &out)?;
            println!(
                "{runs} runs merged: results, plots and report in {}",
                out.display()
            );
            Ok(())
        }
        Command::Verify {
            results,
            runs,
            device,
        } => {
            let verification = verify::verify(&results, runs, &device.device()?)?;
            println!("{verification}");
            match verification.verdict_holds() {
                true => Ok(()),
                false => Err(RunnerError::VerdictChanged {
                    results: results.clone(),
                }),
            }
        }
        Command::Readme {
            readme,
            results,
            experiments,
        } => {
            normlab_runner::readme::update(&readme, &results, &experiments)?;
            println!(
                "{}: results section written from {}",
                readme.display(),
                results.display()
            );
            Ok(())
        }
        Command::Plot { results } => sweep::redraw(&results),
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    #[test]
    fn the_option_kept_at_minus_one_is_mimallocs_purge_delay() {
        // SAFETY: `mi_option_get` reads mimalloc's option table at an index inside it (15 is
        // below `_mi_option_last` in mimalloc 2 and 3).
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // Its default in mimalloc 3 is 1000 ms, which no neighbouring option has; the
        // environment can set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(
                get(),
                1000,
                "not the purge delay, or not mimalloc 3's default"
            );
        }
        keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
