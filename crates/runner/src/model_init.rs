//! Building a run's model so that its initial weights depend on its seed alone, and checking
//! that it can train at all.

use std::sync::Mutex;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use normlab_model::{Model, ModelError, Network};

use crate::config::GridPoint;
use crate::task::Task;

/// Parameters are drawn lazily from burn's one process-wide RNG. Runs on parallel threads take
/// turns at seeding and drawing, so each run's initial weights depend on its seed alone.
static INIT: Mutex<()> = Mutex::new(());

/// Builds the model of `point` for `task` on `device`, with its weights drawn from its seed and
/// its norm layers running the kernels its config names.
/// They are drawn on the CPU and moved to `device`: each backend has its own random number
/// generator, and the same seed should give the same network on any of them.
pub fn build_model(point: &GridPoint, task: &Task, device: &Device) -> Result<Model, ModelError> {
    let _turn = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let cpu = match device.is_autodiff() {
        true => Device::flex().autodiff(),
        false => Device::flex(),
    };
    cpu.seed(point.run.train.seed);
    let model = point.run.model.init(task.input_shape, task.classes, &cpu)?;
    model.visit(&mut DrawWeights);
    // `fork` keeps which parameters are trained; on flex it moves nothing.
    Ok(model
        .fork(device)
        .with_norm_kernels(point.run.train.norm_kernels))
}

/// Touches every parameter so its lazy initializer runs now, under the lock.
struct DrawWeights;

impl ModuleVisitor for DrawWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Checks that `point` can train on `task` at all: one forward pass on a training batch, whose
/// predictions must be as many as its targets. The error, if any, is the layer's own (e.g. batch
/// norm on one value per channel), or the recurrent net's `output` that does not fit the data.
pub fn dry_run(point: &GridPoint, task: &Task, device: &Device) -> Result<(), ModelError> {
    let train_device = device.clone().autodiff();
    let model = build_model(point, task, &train_device)?;
    let size = point.run.train.batch_size.min(task.train.len());
    let batch = task.batch(&task.train[..size], false, None, &train_device);
    let [predictions, _] = model.forward(batch.input)?.dims();
    let [targets] = batch.targets.dims();
    if predictions == targets {
        return Ok(());
    }
    let fits = match predictions < targets {
        true => "one at every step (a language model): `output = \"every_step\"`",
        false => "one per sequence: `output = \"last_step\"`",
    };
    Err(ModelError::InvalidConfig {
        field: "output",
        message: format!(
            "a batch of {size} gives {predictions} predictions for {targets} targets; the data \
             want {fits}"
        ),
    })
}
