//! The norm crate's errors, each naming the layer, the field or the shapes at fault.

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
        /// The layer, as it describes itself.
        layer: String,
        /// The shape it needs, e.g. `[N, 8, ...]`.
        expected: String,
        /// The shape it was given.
        got: Vec<usize>,
    },
    /// The padding mask does not fit the sequence it masks.
    MaskMismatch {
        /// The layer, as it describes itself.
        layer: String,
        /// The shape of the masked input.
        input: Vec<usize>,
        /// The shape of the mask.
        mask: Vec<usize>,
    },
    /// The layer would have to compute a variance from a single value.
    ///
    /// Batch norm in training mode with one value per channel (a dense batch of one), or
    /// instance norm with one spatial position, can only output `beta`: PyTorch raises, and so
    /// do we, instead of silently learning nothing.
    SingleValueStatistics {
        /// The layer, as it describes itself.
        layer: String,
        /// The input, seen channels-first as `[N, C, S]`.
        shape: Vec<usize>,
        /// Over what the statistic would be taken.
        over: &'static str,
    },
    /// Per-step batch norm was asked for a time step it has no statistics slot for.
    StepOutOfRange {
        /// The layer, as it describes itself.
        layer: String,
        /// The time step asked for.
        step: usize,
        /// How many steps have statistics of their own.
        max_steps: usize,
    },
    /// The layer has no fixed per-channel affine map to freeze or fold: it keeps no running
    /// statistics, or keeps one per time step where a single map is needed.
    NoFixedMap {
        /// The layer, as it describes itself.
        layer: String,
        /// Why.
        reason: &'static str,
    },
    /// The layer cannot do this here (e.g. on this backend).
    Unsupported {
        /// The layer, as it describes itself.
        layer: String,
        /// What it cannot do.
        what: &'static str,
    },
    /// Per-step batch norm was applied to an input without a time axis.
    NeedsTimeAxis {
        /// The layer, as it describes itself.
        layer: String,
    },
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
            Self::NoFixedMap { layer, reason } => write!(
                f,
                "{layer}: has no fixed per-channel affine map to freeze or fold: {reason}"
            ),
            Self::Unsupported { layer, what } => write!(f, "{layer}: not supported: {what}"),
            Self::NeedsTimeAxis { layer } => write!(
                f,
                "{layer}: per-step statistics need a time axis; call forward_sequence or \
                 forward_step instead of forward"
            ),
        }
    }
}

impl std::error::Error for NormError {}
