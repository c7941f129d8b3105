//! What every network of this crate is: logits from its input, measured or not.

use burn::prelude::*;

use crate::{Instruments, ModelError};

/// A network on its input `I`: [`Model`](crate::Model) on an [`Input`](crate::Input),
/// [`Mlp`](crate::Mlp) on features `[N, inputs]`, [`Cnn`](crate::Cnn) and
/// [`Resnet`](crate::Resnet) on images `[N, C, H, W]`, [`RecurrentNet`](crate::RecurrentNet) on
/// sequences `([N, T, features], mask [N, T])`. An input with no values is an error
/// ([`ModelError::EmptyInput`]).
pub trait Network<I> {
    /// Logits `[N, outputs]` (`[N * T, outputs]` for a recurrent net predicting every step),
    /// measured by `instruments`.
    fn forward_instrumented(
        &self,
        input: I,
        instruments: &mut Instruments,
    ) -> Result<Tensor<2>, ModelError>;

    /// The logits with nothing measured.
    fn forward(&self, input: I) -> Result<Tensor<2>, ModelError> {
        self.forward_instrumented(input, &mut Instruments::none())
    }
}
