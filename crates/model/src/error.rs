use normlab_norm::NormError;

/// What can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A norm layer refused its config or its input; `site` says which layer of the model.
    #[error("{site}: {source}")]
    Norm {
        /// Which norm of the model: `hidden 2`, `conv 1`, `Lstm layer 1 cell`.
        site: String,
        /// The layer's own error.
        #[source]
        source: NormError,
    },
    /// The model config does not fit the data it is asked to model.
    #[error("invalid model config: `{field}`: {message}")]
    InvalidConfig {
        /// The config field, as spelled in a config file.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The input is not the kind the model was built for.
    #[error("{model} expects {expected} input, got {got}")]
    WrongInput {
        /// The network's kind name.
        model: &'static str,
        /// The input it takes.
        expected: &'static str,
        /// The input it was given.
        got: String,
    },
}

impl ModelError {
    /// Wraps a norm layer's error with the site it happened at; `site` is only called on error.
    pub(crate) fn norm(site: impl FnOnce() -> String) -> impl FnOnce(NormError) -> Self {
        move |source| Self::Norm {
            site: site(),
            source,
        }
    }
}
