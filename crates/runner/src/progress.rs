//! What a sweep shows while it runs: progress bars on a terminal, a line per finished run
//! otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::analysis::{final_error, fmt_duration};
use crate::results::{RunRecord, Status};

/// Progress bars on a terminal (the grid, and each run in flight, with ETAs); a plain line per
/// finished run otherwise.
pub(crate) struct Progress {
    bars: MultiProgress,
    grid: ProgressBar,
    terminal: bool,
}

impl Progress {
    pub(crate) fn new(runs: usize) -> Self {
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

    pub(crate) fn start(&self, id: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("{msg:40!} {bar:30} {pos}/{len} steps, eta {eta}")
                .expect("valid template"),
        );
        bar.set_message(id.to_string());
        bar
    }

    /// A run another process holds or finished: off this sweep's count, without a line.
    pub(crate) fn elsewhere(&self) {
        self.grid.inc(1);
    }

    pub(crate) fn finish(&self, bar: ProgressBar, record: &RunRecord) {
        bar.finish_and_clear();
        self.grid.inc(1);
        // The run's error as its report will give it (the median over the last 10% of
        // training), not its last evaluation alone.
        let outcome = match (record.status, final_error(record)) {
            (Status::Finished, Some(error)) => format!("final valid error {error:.2}%"),
            (status, _) => format!("{status:?}: {}", record.reason.as_deref().unwrap_or("")),
        };
        let (done, runs) = (self.grid.position(), self.grid.length().unwrap_or(0));
        // The runs so far, at the pace they went, for the runs still to come.
        let left =
            self.grid.elapsed().as_secs_f64() / done as f64 * runs.saturating_sub(done) as f64;
        let left = match done < runs {
            true => format!("; about {} left in the sweep", fmt_duration(left)),
            false => String::new(),
        };
        let line = format!(
            "[{done}/{runs}] {}: {outcome} ({:.1} s{left})",
            record.id, record.wall_seconds
        );
        match self.terminal {
            true => self.bars.println(line).unwrap_or(()),
            false => println!("{line}"),
        }
    }
}
