use normlab_data::{
    ClassMix, DataError, Splits, batch_order, class_batches, split_indices, split_train_valid,
};

/// Every index of `0..n` appears exactly once across `parts`.
fn assert_partition(n: usize, parts: &[&[usize]]) {
    let mut all: Vec<usize> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}

#[test]
fn splits_partition_and_have_the_requested_sizes() {
    let s = split_indices(1000, 0.15, 0.2, 7).unwrap();
    assert_eq!(
        (s.train.len(), s.valid.len(), s.test.len()),
        (650, 150, 200)
    );
    assert_partition(1000, &[&s.train, &s.valid, &s.test]);
    for part in [&s.train, &s.valid, &s.test] {
        assert!(part.is_sorted());
    }
    // Random, not the first or last examples in order.
    assert_ne!(s.test, (0..200).collect::<Vec<_>>());
    assert_ne!(s.test, (800..1000).collect::<Vec<_>>());
}

#[test]
fn splits_are_deterministic_per_seed() {
    let a = split_indices(500, 0.1, 0.1, 42).unwrap();
    assert_eq!(a, split_indices(500, 0.1, 0.1, 42).unwrap());
    let b = split_indices(500, 0.1, 0.1, 43).unwrap();
    assert_ne!(a.valid, b.valid);
    assert_ne!(a.test, b.test);
}

#[test]
fn rounding_never_overshoots() {
    let s = split_indices(7, 0.5, 0.5, 1).unwrap();
    assert_eq!(s.train.len() + s.valid.len() + s.test.len(), 7);
    assert_partition(7, &[&s.train, &s.valid, &s.test]);
    assert_eq!(
        split_indices(0, 0.2, 0.2, 1).unwrap(),
        Splits {
            train: vec![],
            valid: vec![],
            test: vec![],
        }
    );
}

#[test]
fn train_valid_split_leaves_test_empty() {
    let s = split_train_valid(60_000, 1.0 / 6.0, 3).unwrap();
    assert_eq!((s.train.len(), s.valid.len()), (50_000, 10_000));
    assert!(s.test.is_empty());
    assert_partition(60_000, &[&s.train, &s.valid]);
}

#[test]
fn bad_fractions_are_rejected() {
    for (valid, test) in [(-0.1, 0.0), (0.0, 1.5), (f64::NAN, 0.1), (0.6, 0.5)] {
        let err = split_indices(10, valid, test, 0).unwrap_err();
        assert!(matches!(err, DataError::InvalidArgument { .. }), "{err:?}");
        assert!(err.to_string().contains("split fraction"), "{err}");
    }
}

#[test]
fn batches_cover_every_index_once_and_keep_the_last_partial_batch() {
    let indices: Vec<usize> = (100..203).collect();
    let batches = batch_order(&indices, 10, 5, 0).unwrap();
    assert_eq!(batches.len(), 11);
    assert!(batches[..10].iter().all(|b| b.len() == 10));
    assert_eq!(batches[10].len(), 3);
    let mut all: Vec<usize> = batches.concat();
    assert_ne!(all, indices, "not shuffled");
    all.sort_unstable();
    assert_eq!(all, indices);
}

#[test]
fn batch_order_is_deterministic_per_seed_and_epoch() {
    let indices: Vec<usize> = (0..64).collect();
    let order = |seed, epoch| batch_order(&indices, 8, seed, epoch).unwrap();
    assert_eq!(order(1, 0), order(1, 0));
    assert_ne!(order(1, 0), order(1, 1), "epochs should differ");
    assert_ne!(order(1, 0), order(2, 0), "seeds should differ");
    // The seed and epoch are not mixed into one number: (1, 2) and (2, 1) are different streams.
    assert_ne!(order(1, 2), order(2, 1));
}

#[test]
fn zero_batch_size_is_rejected() {
    let err = batch_order(&[1, 2, 3], 0, 0, 0).unwrap_err();
    assert!(err.to_string().contains("batch size"), "{err}");
    assert!(batch_order(&[], 4, 0, 0).unwrap().is_empty());
}

/// `batches` (epoch 0) hold `examples` distinct examples, none twice, and `batches_of(epoch)`
/// gives them again for epoch 0 and another order for epoch 1.
fn assert_once_each_and_replayable(
    batches: &[Vec<usize>],
    examples: usize,
    batches_of: impl Fn(u64) -> Vec<Vec<usize>>,
) {
    let mut all: Vec<usize> = batches.concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), examples, "an example appears twice");
    assert_eq!(batches, batches_of(0));
    assert_ne!(batches, batches_of(1));
}

#[test]
fn two_class_batches_hold_two_classes_half_each_and_no_example_twice() {
    // 10 classes of 37 examples each, labelled by index.
    let indices: Vec<usize> = (0..370).collect();
    let label = |i: usize| i % 10;
    let batches = class_batches(ClassMix::TwoClasses, &indices, label, 8, 3, 0).unwrap();
    // Each class gives 9 halves of 4 (one example left over): 90 halves, 45 batches at most.
    assert!(batches.len() >= 40, "{} batches", batches.len());
    for batch in &batches {
        assert_eq!(batch.len(), 8);
        let classes: Vec<usize> = batch.iter().map(|&i| label(i)).collect();
        assert!(classes[..4].iter().all(|&c| c == classes[0]), "{classes:?}");
        assert!(classes[4..].iter().all(|&c| c == classes[4]), "{classes:?}");
        assert_ne!(classes[0], classes[4], "{classes:?}");
    }
    assert_once_each_and_replayable(&batches, batches.len() * 8, |epoch| {
        class_batches(ClassMix::TwoClasses, &indices, label, 8, 3, epoch).unwrap()
    });
    assert!(class_batches(ClassMix::TwoClasses, &indices, label, 1, 3, 0).is_err());
}

#[test]
fn same_class_pair_batches_hold_pairs_of_one_class_and_mix_classes_across_pairs() {
    // 10 classes of 37 examples each, labelled by index: 18 pairs per class, one left over.
    let indices: Vec<usize> = (0..370).collect();
    let label = |i: usize| i % 10;
    let batches = class_batches(ClassMix::SameClassPairs, &indices, label, 32, 3, 0).unwrap();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 360, "every pair is used once");
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 32),
        "{sizes:?}"
    );
    let mut classes_per_batch = Vec::new();
    for batch in &batches {
        let classes: Vec<usize> = batch.iter().map(|&i| label(i)).collect();
        for pair in classes.chunks(2) {
            assert_eq!(pair[0], pair[1], "a pair mixes classes: {classes:?}");
        }
        let mut distinct = classes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        classes_per_batch.push(distinct.len());
    }
    // 16 pairs drawn from 10 classes cover most of them; two-class batches would give 2.
    assert!(classes_per_batch[0] >= 6, "{classes_per_batch:?}");
    assert_once_each_and_replayable(&batches, 360, |epoch| {
        class_batches(ClassMix::SameClassPairs, &indices, label, 32, 3, epoch).unwrap()
    });
    for odd_or_tiny in [0, 1, 3, 31] {
        let err = class_batches(ClassMix::SameClassPairs, &indices, label, odd_or_tiny, 3, 0)
            .unwrap_err();
        assert!(err.to_string().contains("even"), "{err}");
    }
}
