//! The model crate's errors, each naming the layer or field at fault.

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
    /// The input holds no values: a batch of no examples, sequences of no steps.
    #[error("input of shape {shape:?} holds no values: nothing to predict")]
    EmptyInput {
        /// The shape of the input.
        shape: Vec<usize>,
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
    /// An [`EmptyInput`](ModelError::EmptyInput) error if `shape` has an axis of length 0.
    ///
    /// Every network refuses such input before its first layer: there is nothing to predict,
    /// and burn-flex 0.22.1 reads out of bounds on an empty batch of matrix products (its
    /// batched `matmul` broadcasts a batch of 0 against one of 1 as 1 and runs one product
    /// over no data), which killed the process with a segmentation fault.
    pub(crate) fn check_not_empty(shape: &[usize]) -> Result<(), Self> {
        match shape.contains(&0) {
            true => Err(Self::EmptyInput {
                shape: shape.to_vec(),
            }),
            false => Ok(()),
        }
    }

    /// Wraps a norm layer's error with the site it happened at; `site` is only called on error.
    pub(crate) fn norm(site: impl FnOnce() -> String) -> impl FnOnce(NormError) -> Self {
        move |source| Self::Norm {
            site: site(),
            source,
        }
    }
}
