use normlab_norm::NormError;

/// What can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A norm layer refused its config or its input; `site` says which layer of the model.
    #[error("{site}: {source}")]
    Norm {
        site: String,
        #[source]
        source: NormError,
    },
    /// The model config does not fit the data it is asked to model.
    #[error("invalid model config: `{field}`: {message}")]
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    /// The input is not the kind the model was built for.
    #[error("{model} expects {expected} input, got {got}")]
    WrongInput {
        model: &'static str,
        expected: &'static str,
        got: String,
    },
}

impl ModelError {
    pub(crate) fn norm(site: impl Into<String>) -> impl FnOnce(NormError) -> Self {
        let site = site.into();
        move |source| Self::Norm { site, source }
    }
}
