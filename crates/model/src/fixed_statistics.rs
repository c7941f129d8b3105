//! A trained model with its batch statistics fixed: folded into the layers before them for
//! inference, or frozen into per-channel maps for fine-tuning at small batch.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use normlab_norm::{
    Norm, NormConfig, NormError, WEIGHT_STANDARDIZATION_EPSILON, fold_into_conv2d,
    fold_into_linear, standardize_weights,
};

use crate::weights::with_weight;
use crate::{Model, ModelError};

impl Model {
    /// The eval-mode model (as [`valid`](Module::valid)) with every norm that has a fixed eval
    /// map (batch norm, batch renormalization, frozen batch norm) and sits right after a linear
    /// or conv layer, before the activation, folded into that layer: the outputs are those of
    /// the eval model, with one layer fewer per block. Standardized weights are folded as
    /// standardized. Norms that cannot fold (after the activation, per-sample families,
    /// recurrent nets) stay as they are.
    pub fn fold_batch_norms(&self) -> Model {
        match self.valid() {
            Model::Mlp(mut mlp) => {
                let (foldable, standardize) = mlp.layout.take_for_folding();
                for (layer, norm) in mlp.layers.iter_mut().zip(&mut mlp.norms) {
                    if standardize {
                        let weight = standardize_weights(
                            layer.weight.val(),
                            1,
                            WEIGHT_STANDARDIZATION_EPSILON,
                        );
                        layer.weight = Param::from_tensor(weight);
                    }
                    if let (true, Ok(folded)) = (foldable, fold_into_linear(layer, norm)) {
                        (*layer, *norm) = (folded, identity(norm));
                    }
                }
                Model::Mlp(mlp)
            }
            Model::Cnn(mut cnn) => {
                let (foldable, standardize) = cnn.layout.take_for_folding();
                let pairs = cnn.convs.iter_mut().zip(&mut cnn.norms);
                fold_into_convs(pairs, standardize, foldable);
                Model::Cnn(cnn)
            }
            Model::Resnet(mut net) => {
                let standardize = std::mem::take(&mut net.weight_standardization);
                fold_into_convs(net.conv_norms_mut(), standardize, true);
                Model::Resnet(net)
            }
            recurrent => recurrent,
        }
    }

    /// The model with every batch norm and batch renormalization frozen into the fixed
    /// per-channel map it applies in eval ([`Norm::frozen`]), in training as in eval: for
    /// fine-tuning at a batch size too small for batch statistics. An error for a batch norm
    /// without running statistics, naming it.
    pub fn frozen(self) -> Result<Model, ModelError> {
        self.map_norms(Norm::frozen)
    }

    /// The model with `f` applied to each of its norms, in order.
    pub(crate) fn map_norms(
        self,
        mut f: impl FnMut(Norm) -> Result<Norm, NormError>,
    ) -> Result<Model, ModelError> {
        let mut each = |norms: Vec<Norm>| -> Result<Vec<Norm>, ModelError> {
            norms
                .into_iter()
                .map(|norm| {
                    let site = norm.describe();
                    f(norm).map_err(ModelError::norm(|| site))
                })
                .collect()
        };
        Ok(match self {
            Model::Mlp(mut mlp) => {
                mlp.norms = each(mlp.norms)?;
                Model::Mlp(mlp)
            }
            Model::Cnn(mut cnn) => {
                cnn.norms = each(cnn.norms)?;
                Model::Cnn(cnn)
            }
            Model::Resnet(mut net) => {
                for norm in net.norms_mut() {
                    let site = norm.describe();
                    *norm = f(norm.clone()).map_err(ModelError::norm(|| site))?;
                }
                Model::Resnet(net)
            }
            Model::Recurrent(mut net) => {
                for layer in &mut net.layers {
                    let norms: Vec<Norm> = [Some(layer.input_norm.clone())]
                        .into_iter()
                        .chain([layer.recurrent_norm.clone(), layer.cell_norm.clone()])
                        .flatten()
                        .collect();
                    let mut mapped = each(norms)?.into_iter();
                    layer.input_norm = mapped.next().expect("input norm");
                    if layer.recurrent_norm.is_some() {
                        layer.recurrent_norm = mapped.next();
                    }
                    if layer.cell_norm.is_some() {
                        layer.cell_norm = mapped.next();
                    }
                }
                Model::Recurrent(net)
            }
        })
    }
}

/// Each convolution's filters standardized (when `standardize`) and the norm after it folded
/// into it where it can be (when `foldable`: the norm sits before the activation).
fn fold_into_convs<'a>(
    pairs: impl Iterator<Item = (&'a mut Conv2d, &'a mut Norm)>,
    standardize: bool,
    foldable: bool,
) {
    for (conv, norm) in pairs {
        if standardize {
            let weight = standardize_weights(conv.weight.val(), 0, WEIGHT_STANDARDIZATION_EPSILON);
            *conv = with_weight(conv, weight);
        }
        if let (true, Ok(folded)) = (foldable, fold_into_conv2d(conv, norm)) {
            (*conv, *norm) = (folded, identity(norm));
        }
    }
}

/// The "none" norm of the same width (it holds no tensor, so the device does not matter).
fn identity(norm: &Norm) -> Norm {
    NormConfig::None
        .init(norm.num_features(), &Device::default())
        .expect("a width that a norm had is valid")
}
