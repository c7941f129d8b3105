//! A data set made ready for training: split, subset, scaled, and cut into batches of tensors.

use burn::prelude::*;
use burn::tensor::TensorData;
use std::path::{Path, PathBuf};

use normlab_data::{
    ClassMix, DataError, DataRoot, Images, ScaleKind, Scaler, Sequences, Split, Text, batch_order,
    class_batches, images_from_csv, images_from_idx, pad_sequences, read_idx, read_text_file,
    read_ts, shuffled, split_train_valid,
};
use normlab_model::{Input, InputShape};

use crate::config::{
    Batching, CsvFiles, DataConfig, DataFiles, DataSet, DataSource, IdxFiles, ImageSteps, TextFile,
    TsFiles,
};

/// Splits and subsets use this seed, not the run's: every run of an experiment sees the same
/// training and evaluation examples.
const DATA_SEED: u64 = 0;

/// A batch ready for the model.
pub struct Batch {
    /// The model's input.
    pub input: Input,
    /// `[N]` labels, or `[N * T]` next characters for a language model.
    pub targets: Tensor<1, Int>,
}

enum Examples {
    /// Images, presented as sequences when `steps` says what a step is.
    Images {
        images: Images,
        steps: Option<ImageSteps>,
    },
    Sequences(Sequences),
    /// Windows of `seq_len` characters; training windows come from the start of the text,
    /// evaluation windows from its last `valid_fraction`.
    Text {
        text: Text,
        seq_len: usize,
        valid_start: usize,
    },
}

/// A prepared data set.
pub struct Task {
    examples: Examples,
    /// The shape of one example.
    pub input_shape: InputShape,
    /// Classes (or characters of the vocabulary).
    pub classes: usize,
    /// Indices of the training examples.
    pub train: Vec<usize>,
    /// Indices of the evaluation examples.
    pub valid: Vec<usize>,
    /// What the evaluation examples are, for reports.
    pub valid_source: String,
    /// Fitted on the training examples; `None` without scaling.
    pub scaler: Option<Scaler>,
}

impl Task {
    /// Loads and prepares the data `config` names from `root`; relative paths of your own files start
    /// from `base` (the experiment file's folder) where they exist there. Errors say what is
    /// missing and, for sets fetched on demand, the command that fetches them.
    pub fn load(config: &DataConfig, base: &Path, root: &DataRoot) -> Result<Self, DataError> {
        let (examples, train, valid, valid_source) = match &config.source {
            DataSource::Named(DataSet::Digits) => image_split(root.digits()?, None, config)?,
            DataSource::Named(DataSet::Mnist) => {
                image_split(root.mnist(Split::Train)?, None, config)?
            }
            DataSource::Named(DataSet::FashionMnist) => {
                image_split(root.fashion_mnist(Split::Train)?, None, config)?
            }
            DataSource::Named(DataSet::JapaneseVowels) => sequence_split(
                root.japanese_vowels(Split::Train)?,
                Some(root.japanese_vowels(Split::Test)?),
                config,
            )?,
            DataSource::Named(DataSet::Shakespeare) => {
                named_text_split(root.embedded_shakespeare()?, config)?
            }
            DataSource::Named(DataSet::ShakespeareFull) => {
                named_text_split(root.shakespeare_full()?, config)?
            }
            DataSource::Files(files) => {
                let at = |path: &PathBuf| resolve(base, path);
                match files {
                    DataFiles::Idx(IdxFiles {
                        train_images,
                        train_labels,
                        test_images,
                        test_labels,
                    }) => {
                        let train = idx_images(&at(train_images), &at(train_labels))?;
                        let test = match (test_images, test_labels) {
                            (Some(images), Some(labels)) => {
                                Some(idx_images(&at(images), &at(labels))?)
                            }
                            _ => None,
                        };
                        image_split(train, test, config)?
                    }
                    DataFiles::Csv(CsvFiles {
                        train,
                        test,
                        label,
                        shape,
                    }) => {
                        let read = |path| images_from_csv(&at(path), label, *shape);
                        let test = test.as_ref().map(read).transpose()?;
                        image_split(read(train)?, test, config)?
                    }
                    DataFiles::Ts(TsFiles { train, test }) => {
                        let test = test.as_ref().map(|path| read_ts(at(path))).transpose()?;
                        sequence_split(read_ts(at(train))?, test, config)?
                    }
                    DataFiles::Text(TextFile { path }) => {
                        let path = at(path);
                        text_split(read_text_file(&path)?, config)
                            .map_err(|problem| DataError::Format { path, problem })?
                    }
                }
            }
        };
        let mut task = Self::new(examples, train, valid, valid_source);
        task.subset(config.train_size, config.valid_size)?;
        task.fit_scaler(config)?;
        Ok(task)
    }

    fn new(examples: Examples, train: Vec<usize>, valid: Vec<usize>, valid_source: String) -> Self {
        let (input_shape, classes) = match &examples {
            Examples::Images { images, steps } => {
                let [c, _, w] = images.shape;
                let shape = match steps {
                    Some(ImageSteps::Rows) => InputShape::Sequence(c * w),
                    Some(ImageSteps::Pixels) => InputShape::Sequence(c),
                    None => InputShape::Image(images.shape),
                };
                (shape, images.classes)
            }
            Examples::Sequences(s) => (InputShape::Sequence(s.features), s.classes),
            Examples::Text { text, .. } => {
                (InputShape::Sequence(text.vocab_size()), text.vocab_size())
            }
        };
        Self {
            examples,
            input_shape,
            classes,
            train,
            valid,
            valid_source,
            scaler: None,
        }
    }

    /// Keeps a fixed random subset of each split, when asked to; asking for more examples than
    /// a split has is an error naming both numbers.
    fn subset(
        &mut self,
        train_size: Option<usize>,
        valid_size: Option<usize>,
    ) -> Result<(), DataError> {
        let splits = [
            ("train_size", "training", &mut self.train, train_size),
            ("valid_size", "validation", &mut self.valid, valid_size),
        ];
        for (field, split, indices, size) in splits {
            let Some(size) = size.filter(|&s| s != indices.len()) else {
                continue;
            };
            if size > indices.len() {
                let problem = format!(
                    "{size} examples asked, but the {split} split has only {}",
                    indices.len()
                );
                return Err(DataError::InvalidArgument {
                    what: field,
                    problem,
                });
            }
            *indices = shuffled(indices, DATA_SEED, 0)[..size].to_vec();
            indices.sort_unstable();
        }
        Ok(())
    }

    /// Fits the scaler on the training examples and applies it to every example.
    fn fit_scaler(&mut self, config: &DataConfig) -> Result<(), DataError> {
        if config.scaling.kind == ScaleKind::None {
            return Ok(());
        }
        let scaler = match &mut self.examples {
            Examples::Images { images, .. } => {
                let width = images.example_len();
                let scaler = Scaler::fit(config.scaling, &images.gather(&self.train), width)?;
                scaler.transform(&mut images.pixels)?;
                scaler
            }
            Examples::Sequences(sequences) => {
                let rows = sequences.rows(&self.train);
                let scaler = Scaler::fit(config.scaling, &rows, sequences.features)?;
                for case in &mut sequences.values {
                    scaler.transform(case)?;
                }
                scaler
            }
            Examples::Text { .. } => {
                return Err(DataError::InvalidArgument {
                    what: "data.scaling",
                    problem: "text is one-hot encoded; scaling does not apply".into(),
                });
            }
        };
        self.scaler = Some(scaler);
        Ok(())
    }

    /// The batch of examples `indices` of the training (`eval = false`) or evaluation split, on
    /// `device`. `length` overrides the window length of a text set.
    pub fn batch(
        &self,
        indices: &[usize],
        eval: bool,
        length: Option<usize>,
        device: &Device,
    ) -> Batch {
        let n = indices.len();
        let labels = |labels: Vec<i64>| {
            Tensor::from_data(TensorData::new(labels.clone(), [labels.len()]), device)
        };
        match &self.examples {
            Examples::Images { images, steps } => {
                let [c, h, w] = images.shape;
                let pixels = TensorData::new(images.gather(indices), [n, c, h, w]);
                let pixels = Tensor::<4>::from_data(pixels, device);
                let sequences = |values| Input::Sequences { values, mask: None };
                let input = match steps {
                    // Row `t` of every channel side by side: step `t` of the sequence.
                    Some(ImageSteps::Rows) => {
                        sequences(pixels.swap_dims(1, 2).reshape([n, h, c * w]))
                    }
                    // Pixel `t` in row-major order, its channels side by side.
                    Some(ImageSteps::Pixels) => {
                        sequences(pixels.reshape([n, c, h * w]).swap_dims(1, 2))
                    }
                    None => Input::Images(pixels),
                };
                Batch {
                    input,
                    targets: labels(indices.iter().map(|&i| images.labels[i] as i64).collect()),
                }
            }
            Examples::Sequences(sequences) => {
                let batch = pad_sequences(sequences, indices);
                let [t, f] = [batch.steps, batch.features];
                let values = Tensor::from_data(TensorData::new(batch.values, [n, t, f]), device);
                let mask = Tensor::from_data(TensorData::new(batch.mask, [n, t]), device);
                Batch {
                    input: Input::Sequences {
                        values,
                        mask: Some(mask),
                    },
                    targets: labels(batch.labels.iter().map(|&l| l as i64).collect()),
                }
            }
            Examples::Text {
                text,
                seq_len,
                valid_start,
            } => {
                let len = length.unwrap_or(*seq_len);
                let base = if eval { *valid_start } else { 0 };
                let vocab = text.vocab_size();
                let mut one_hot = vec![0.0f32; n * len * vocab];
                let mut targets = Vec::with_capacity(n * len);
                for (row, &i) in indices.iter().enumerate() {
                    let (input, next) = text
                        .window(base + i * len, len)
                        .expect("window indices come from the text's length");
                    for (t, &id) in input.iter().enumerate() {
                        one_hot[(row * len + t) * vocab + id as usize] = 1.0;
                    }
                    targets.extend(next.iter().map(|&id| id as i64));
                }
                let values = Tensor::from_data(TensorData::new(one_hot, [n, len, vocab]), device);
                Batch {
                    input: Input::Sequences { values, mask: None },
                    targets: labels(targets),
                }
            }
        }
    }

    /// The training batches of `epoch`: shuffled, or grouped by class as `batching` says.
    pub fn train_batches(
        &self,
        batch_size: usize,
        batching: Batching,
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<Vec<usize>>, DataError> {
        let labels = || match &self.examples {
            Examples::Images { images, .. } => Ok(&images.labels),
            Examples::Sequences(sequences) => Ok(&sequences.labels),
            Examples::Text { .. } => Err(DataError::InvalidArgument {
                what: "train.batches",
                problem: "a language model has no class per example".into(),
            }),
        };
        let mix = match batching {
            Batching::Shuffled => return batch_order(&self.train, batch_size, seed, epoch),
            Batching::SameClassPairs => ClassMix::SameClassPairs,
            Batching::TwoClasses => ClassMix::TwoClasses,
        };
        let labels = labels()?;
        class_batches(mix, &self.train, |i| labels[i], batch_size, seed, epoch)
    }

    /// Checks that the evaluation text holds at least one window of each of `lengths` (text
    /// sets; other sets take no lengths).
    pub fn check_eval_lengths(&self, lengths: &[usize]) -> Result<(), DataError> {
        let Examples::Text {
            text, valid_start, ..
        } = &self.examples
        else {
            return Ok(());
        };
        let available = text.len() - valid_start;
        match lengths
            .iter()
            .find(|&&l| self.valid_for_length(l).is_empty())
        {
            Some(length) => Err(DataError::InvalidArgument {
                what: "train.eval_lengths",
                problem: format!(
                    "a window of {length} characters needs {} of the evaluation text, which \
                     holds {available}",
                    length + 1
                ),
            }),
            None => Ok(()),
        }
    }

    /// Evaluation indices for windows of `length` characters (text sets; the evaluation split
    /// otherwise). They cover the characters the evaluation windows of the training length
    /// cover, so that a score changes with the length and not with the text scored.
    pub fn valid_for_length(&self, length: usize) -> Vec<usize> {
        match &self.examples {
            Examples::Text {
                text,
                valid_start,
                seq_len,
            } => {
                let length = length.max(1);
                let available = (text.len() - valid_start).saturating_sub(1) / length;
                let same_text = (self.valid.len() * seq_len / length).max(1);
                (0..available.min(same_text)).collect()
            }
            _ => self.valid.clone(),
        }
    }
}

/// What [`Task::load`] builds a task from: the examples, the training and evaluation indices
/// and what the evaluation examples are.
type Prepared = (Examples, Vec<usize>, Vec<usize>, String);

/// `path` under `base` where it exists there, else as given (from the working directory).
fn resolve(base: &Path, path: &Path) -> PathBuf {
    let under_base = base.join(path);
    match under_base.exists() {
        true => under_base,
        false => path.to_path_buf(),
    }
}

/// IDX images and labels with as many classes as the largest label says.
fn idx_images(images: &Path, labels: &Path) -> Result<Images, DataError> {
    let classes = read_idx(labels)?
        .data
        .iter()
        .max()
        .map_or(1, |&l| usize::from(l) + 1);
    images_from_idx(images, labels, classes)
}

/// The evaluation examples: the test examples (appended after the training ones) when given,
/// else `valid_fraction` of the training examples, held out.
fn held_out(
    train: usize,
    test: Option<usize>,
    config: &DataConfig,
    test_source: &str,
) -> Result<(Vec<usize>, Vec<usize>, String), DataError> {
    Ok(match test {
        Some(test) => (
            (0..train).collect(),
            (train..train + test).collect(),
            test_source.to_string(),
        ),
        None => {
            let splits = split_train_valid(train, config.valid_fraction, DATA_SEED)?;
            let source = format!(
                "{:.0}% of the training set, held out",
                config.valid_fraction * 100.0
            );
            (splits.train, splits.valid, source)
        }
    })
}

fn image_split(
    mut images: Images,
    test: Option<Images>,
    config: &DataConfig,
) -> Result<Prepared, DataError> {
    let counts = (images.len(), test.as_ref().map(Images::len));
    if let Some(test) = test {
        if test.shape != images.shape {
            return Err(DataError::InvalidArgument {
                what: "test files",
                problem: format!(
                    "examples of shape {:?}, the training ones {:?}",
                    test.shape, images.shape
                ),
            });
        }
        images.classes = images.classes.max(test.classes);
        images.pixels.extend(test.pixels);
        images.labels.extend(test.labels);
    }
    let (train, valid, source) = held_out(counts.0, counts.1, config, "the test files")?;
    let examples = Examples::Images {
        images,
        steps: config.image_steps,
    };
    Ok((examples, train, valid, source))
}

fn sequence_split(
    mut sequences: Sequences,
    test: Option<Sequences>,
    config: &DataConfig,
) -> Result<Prepared, DataError> {
    let counts = (sequences.len(), test.as_ref().map(Sequences::len));
    if let Some(test) = test {
        if (test.features, &test.class_names) != (sequences.features, &sequences.class_names) {
            return Err(DataError::InvalidArgument {
                what: "test files",
                problem: format!(
                    "{} features and classes {:?}, the training ones {} and {:?}",
                    test.features, test.class_names, sequences.features, sequences.class_names
                ),
            });
        }
        sequences.values.extend(test.values);
        sequences.labels.extend(test.labels);
    }
    let (train, valid, source) = held_out(counts.0, counts.1, config, "the official test split")?;
    Ok((Examples::Sequences(sequences), train, valid, source))
}

/// [`text_split`] of a named set, whose only fault can be a window longer than the text.
fn named_text_split(text: Text, config: &DataConfig) -> Result<Prepared, DataError> {
    text_split(text, config).map_err(|problem| DataError::InvalidArgument {
        what: "data.seq_len",
        problem,
    })
}

/// Training windows from the start of the text, evaluation windows from its last
/// `valid_fraction`; the error says why a text too short for one window of each is.
fn text_split(text: Text, config: &DataConfig) -> Result<Prepared, String> {
    let seq_len = config.seq_len.max(1);
    let valid_start = (text.len() as f64 * (1.0 - config.valid_fraction)) as usize;
    let train: Vec<usize> = (0..valid_start.saturating_sub(1) / seq_len).collect();
    let valid: Vec<usize> = (0..(text.len() - valid_start).saturating_sub(1) / seq_len).collect();
    if train.is_empty() || valid.is_empty() {
        return Err(format!(
            "{} characters: too short for a window of {seq_len} characters (seq_len) in both \
             parts of the text: a window needs {} characters (its {seq_len} and the one after), \
             and the first {:.0}% holds {valid_start}, the last {:.0}% (valid_fraction) {}",
            text.len(),
            seq_len + 1,
            (1.0 - config.valid_fraction) * 100.0,
            config.valid_fraction * 100.0,
            text.len() - valid_start,
        ));
    }
    let source = format!(
        "the last {:.0}% of the text, in windows of {seq_len} characters",
        config.valid_fraction * 100.0
    );
    let examples = Examples::Text {
        text,
        seq_len,
        valid_start,
    };
    Ok((examples, train, valid, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_evaluation_windows_cover_the_same_text() {
        let config: DataConfig =
            toml::from_str("set = \"shakespeare\"\nseq_len = 32\nvalid_size = 10").unwrap();
        let task = Task::load(&config, Path::new("."), &DataRoot::default()).unwrap();
        let counts: Vec<usize> = [32, 64, 128, 320, 1000]
            .map(|length| task.valid_for_length(length).len())
            .to_vec();
        // 320 characters: ten windows of 32, five of 64, two of 128 (256 of the 320), one of
        // 320, and one of 1000 rather than none.
        assert_eq!(counts, [10, 5, 2, 1, 1]);
    }
}
