//! Forward passes without gradients on an autodiff device, batch after batch.
//!
//! Batch statistics need an autodiff device: a norm layer uses them only there (burn-nn's
//! rule), so scoring a model in train mode or re-estimating its population statistics
//! (PreciseBN) runs forward passes on one, with no gradient wanted. Burn records every operation
//! on such a device, those without gradients too, with the tensors that some of them keep for a
//! backward pass, and sweeps the records of finished passes only when a backward pass ends. A
//! loop of forward passes alone keeps every batch's intermediate tensors alive until the next
//! training step: hundreds of megabytes over one evaluation of a recurrent network, and the
//! fresh memory they take costs more time than the passes themselves.

use burn::prelude::*;

/// Frees what burn's autodiff graph keeps of the forward passes on `device` whose outputs have
/// been dropped; nothing on a device without autodiff. Call it after each batch of a loop of
/// forward passes without a backward pass.
///
/// It runs the backward pass of one value, whose end makes burn sweep every finished graph
/// (burn 0.22 has no other way in). Graphs still in use, such as another thread's training
/// step, are left alone: burn sweeps after every backward pass anyway.
pub fn release_finished_graphs(device: &Device) {
    if device.is_autodiff() {
        let _ = Tensor::<1>::zeros([1], device)
            .require_grad()
            .sum()
            .backward();
    }
}
