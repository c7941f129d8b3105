//! The runner's errors: each names the file (and where it can, the line and field) at fault.

use std::path::PathBuf;

use normlab_data::DataError;
use normlab_model::subnormals::FlushError;

use crate::config::ConfigError;

/// Everything that stops the runner, with the file it is about and the cause.
///
/// Each message reads alone (it names the file and what to do); the cause stays attached as the
/// error's source. Problems of one grid point (a layer that cannot train, a diverging loss) are
/// not errors: they are recorded in that run's record and the sweep goes on.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The experiment file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The data an experiment names cannot be loaded (missing set: the message names the
    /// command that fetches it).
    #[error("{}: [data]: {source}", experiment.display())]
    Data {
        /// The experiment file.
        experiment: PathBuf,
        /// The loader's error.
        #[source]
        source: DataError,
    },

    /// A file of the results folder cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A run file of the results folder does not parse.
    #[error("{}: not a run record: {source}", path.display())]
    RunRecord {
        /// The run file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },

    /// The summary table cannot be written.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The summary file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },

    /// A plot cannot be drawn.
    #[error("{}: cannot draw: {message}", path.display())]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// The drawing library's message.
        message: String,
    },

    /// The results folder holds runs of another version of the experiment, which resuming
    /// would silently mix in.
    #[error(
        "{} holds results of a different version of {}; move that folder away or delete it to \
         start over",
        dir.display(),
        experiment.display()
    )]
    OtherExperiment {
        /// The results folder.
        dir: PathBuf,
        /// The experiment file.
        experiment: PathBuf,
    },

    /// The folder given to redraw has no experiment file.
    #[error("{}: {source} (is this a results folder?)", path.display())]
    NotResults {
        /// The experiment file it should hold.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// `compare --only` names an axis or a value that no run of the folders has.
    #[error("no run matches {filter}; the folders' axes and their values are:\n{available}")]
    NoMatch {
        /// The filter, `AXIS=VALUE, ...`.
        filter: String,
        /// Each axis and its values, one per line.
        available: String,
    },

    /// `verify` retrained runs whose verdict differs from the committed one.
    #[error("the headline verdict of {} does not hold on this machine (see above)", results.display())]
    VerdictChanged {
        /// The results folder.
        results: PathBuf,
    },

    /// The README has no markers around its generated results section.
    #[error(
        "{}: no results section to write: it needs the lines `{}` and `{}` around it",
        readme.display(),
        crate::readme::START,
        crate::readme::END
    )]
    NoReadmeMarkers {
        /// The README.
        readme: PathBuf,
    },

    /// The experiment asks for `subnormals = "flush"`, and this machine cannot give it.
    #[error("{}: [train] subnormals = \"flush\": {source}", experiment.display())]
    Subnormals {
        /// The experiment file.
        experiment: PathBuf,
        /// Why the flushing threads could not start.
        #[source]
        source: FlushError,
    },

    /// The operating system would not start the threads a job of the sweep trains on.
    #[error("could not start the threads of a training job: {0}")]
    Threads(#[source] rayon::ThreadPoolBuildError),

    /// The backend asked for was not compiled in.
    #[error("this build has no {name} backend: rebuild with `--features {name}`")]
    NoBackend {
        /// The backend's name.
        name: String,
    },
}

impl RunnerError {
    /// A closure that wraps an I/O error with `path`, for `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
