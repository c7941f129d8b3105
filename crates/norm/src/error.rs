use std::fmt;

/// Everything that can go wrong when building or applying a norm layer.
///
/// Each variant names the layer (as [`describe`](crate::Norm::describe) prints it) and the
/// values involved, so the message alone says what to fix.
#[derive(Debug, Clone, PartialEq)]
pub enum NormError {
    /// A config field holds a value the layer cannot work with.
    InvalidConfig {
        /// The field, as it is spelled in the config file.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What the value must satisfy.
        expected: String,
    },
    /// The input does not have the shape the layer was built for.
    ShapeMismatch {
        layer: String,
        expected: String,
        got: Vec<usize>,
    },
    /// The padding mask does not fit the sequence it masks.
    MaskMismatch {
        layer: String,
        input: Vec<usize>,
        mask: Vec<usize>,
    },
    /// The layer would have to compute a variance from a single value.
    ///
    /// Batch norm in training mode with one value per channel (a dense batch of one), or
    /// instance norm with one spatial position, can only output `beta`: PyTorch raises, and so
    /// do we, instead of silently learning nothing.
    SingleValueStatistics {
        layer: String,
        shape: Vec<usize>,
        over: &'static str,
    },
    /// Per-step batch norm was asked for a time step it has no statistics slot for.
    StepOutOfRange {
        layer: String,
        step: usize,
        max_steps: usize,
    },
    /// Per-step batch norm was applied to an input without a time axis.
    NeedsTimeAxis { layer: String },
}

impl fmt::Display for NormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig {
                field,
                value,
                expected,
            } => write!(
                f,
                "invalid norm config: `{field}` = {value}, expected {expected}"
            ),
            Self::ShapeMismatch {
                layer,
                expected,
                got,
            } => write!(
                f,
                "{layer}: expected input of shape {expected}, got {got:?}"
            ),
            Self::MaskMismatch { layer, input, mask } => write!(
                f,
                "{layer}: padding mask of shape {mask:?} does not fit input of shape {input:?}; \
                 it needs one flag per sample and time step"
            ),
            Self::SingleValueStatistics { layer, shape, over } => write!(
                f,
                "{layer}: input of shape {shape:?} has only one value {over}, so no variance can \
                 be computed (use a larger batch, or a per-sample norm such as layer or group norm)"
            ),
            Self::StepOutOfRange {
                layer,
                step,
                max_steps,
            } => write!(
                f,
                "{layer}: time step {step} has no statistics of its own (per_step = {max_steps}); \
                 raise per_step to the longest training sequence"
            ),
            Self::NeedsTimeAxis { layer } => write!(
                f,
                "{layer}: per-step statistics need a time axis; call forward_sequence or \
                 forward_step instead of forward"
            ),
        }
    }
}

impl std::error::Error for NormError {}
