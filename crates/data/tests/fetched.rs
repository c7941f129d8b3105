//! Sets fetched by `scripts/fetch-data.sh`. Where one is missing, its test prints the command
//! that fetches it and passes.

mod common;

use common::fetched;
use normlab_data::{DataRoot, Images, Split, pad_sequences};

fn root() -> DataRoot {
    DataRoot::default()
}

fn class_counts(set: &Images) -> Vec<usize> {
    let mut counts = vec![0; set.classes];
    for &label in &set.labels {
        counts[label] += 1;
    }
    counts
}

fn assert_28x28(set: &Images, n: usize) {
    assert_eq!(set.len(), n);
    assert_eq!(set.shape, [1, 28, 28]);
    assert_eq!(set.pixels.len(), n * 784);
    assert_eq!(set.classes, 10);
    assert_eq!(set.pixels.iter().copied().fold(0.0, f32::max), 255.0);
}

#[test]
fn mnist_train() {
    let Some(set) = fetched(root().mnist(Split::Train)) else {
        return;
    };
    assert_28x28(&set, 60_000);
    assert_eq!(set.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(
        class_counts(&set),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(set.example(0).iter().sum::<f32>(), 27_525.0);
}

#[test]
fn mnist_test() {
    let Some(set) = fetched(root().mnist(Split::Test)) else {
        return;
    };
    assert_28x28(&set, 10_000);
    assert_eq!(set.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(
        class_counts(&set),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

#[test]
fn fashion_mnist_both_splits() {
    let Some(train) = fetched(root().fashion_mnist(Split::Train)) else {
        return;
    };
    assert_28x28(&train, 60_000);
    assert_eq!(train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(class_counts(&train), [6000; 10]);

    let test = root().fashion_mnist(Split::Test).unwrap();
    assert_28x28(&test, 10_000);
    assert_eq!(test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(class_counts(&test), [1000; 10]);
}

#[test]
fn japanese_vowels_both_splits() {
    // (split, cases, shortest, longest, total steps, cases per speaker)
    let expected = [
        (Split::Train, 270, 7, 26, 4274, [30; 9]),
        (
            Split::Test,
            370,
            7,
            29,
            5687,
            [31, 35, 88, 44, 29, 24, 40, 50, 29],
        ),
    ];
    for (split, cases, shortest, longest, total, per_class) in expected {
        let Some(seqs) = fetched(root().japanese_vowels(split)) else {
            return;
        };
        assert_eq!(seqs.len(), cases);
        assert_eq!(seqs.features, 12);
        assert_eq!(seqs.classes, 9);
        assert_eq!(
            seqs.class_names,
            ["1", "2", "3", "4", "5", "6", "7", "8", "9"]
        );
        let lengths: Vec<usize> = (0..seqs.len()).map(|i| seqs.steps(i)).collect();
        assert_eq!(*lengths.iter().min().unwrap(), shortest);
        assert_eq!(*lengths.iter().max().unwrap(), longest);
        assert_eq!(lengths.iter().sum::<usize>(), total);
        let mut counts = [0; 9];
        for &label in &seqs.labels {
            counts[label] += 1;
        }
        assert_eq!(counts, per_class);

        let all: Vec<usize> = (0..seqs.len()).collect();
        let batch = pad_sequences(&seqs, &all);
        assert_eq!(batch.steps, longest);
        assert_eq!(batch.mask.iter().filter(|&&m| m).count(), total);
    }
    // First values of the first training case: dimension 1 steps 1-2, dimension 2 step 1.
    if let Some(train) = fetched(root().japanese_vowels(Split::Train)) {
        assert_eq!(train.values[0][..2], [1.860936, -0.207383]);
        assert_eq!(train.values[0][12], 1.891651);
    }
}

#[test]
fn shakespeare_full_works() {
    let Some(text) = fetched(root().shakespeare_full()) else {
        return;
    };
    // 42 works, 5 057 198 bytes of ASCII, joined by 41 blank-line separators.
    assert_eq!(text.len(), 5_057_198 + 41 * 2);
    assert_eq!(text.vocab_size(), 84);
    let start: String = text.ids[..25]
        .iter()
        .map(|&id| text.vocab[id as usize])
        .collect();
    assert_eq!(start, "ALL'S WELL THAT ENDS WELL");
}
