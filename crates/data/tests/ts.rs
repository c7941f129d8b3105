mod common;

use common::{assert_message, gzip};
use normlab_data::{DataError, Sequences, pad_sequences, read_ts};
use normlab_testkit::scratch;

const HEADER: &str = "\
# A comment, then headers.
@problemName Tiny
@univariate false
@dimensions 2
@equalLength false
@classLabel true low high
@data
";

/// Three cases of 2 features with 3, 1 and 2 steps. In the file each dimension lists its
/// values over time; in memory each step lists its features.
fn tiny() -> String {
    format!(
        "{HEADER}\
1,2,3:10,20,30:high
4:40:low

5.5, 6.5 : -1e1,0:high
"
    )
}

#[test]
fn uneven_lengths_load_step_major() {
    let dir = scratch("ts-ok");
    for path in [
        dir.write("tiny.ts", tiny()),
        dir.write("tiny.ts.gz", gzip(tiny().as_bytes())),
    ] {
        let seqs = read_ts(&path).unwrap();
        assert_eq!(seqs.len(), 3);
        assert_eq!(seqs.features, 2);
        assert_eq!(seqs.classes, 2);
        assert_eq!(seqs.class_names, ["low", "high"]);
        assert_eq!(seqs.labels, [1, 0, 1]);
        assert_eq!(seqs.values[0], [1.0, 10.0, 2.0, 20.0, 3.0, 30.0]);
        assert_eq!(seqs.values[1], [4.0, 40.0]);
        assert_eq!(seqs.values[2], [5.5, -10.0, 6.5, 0.0]);
        assert_eq!((seqs.steps(0), seqs.steps(1), seqs.steps(2)), (3, 1, 2));
        assert_eq!(seqs.rows(&[2, 1]), [5.5, -10.0, 6.5, 0.0, 4.0, 40.0]);
    }
}

#[test]
fn padding_fills_zeros_and_masks_them() {
    let dir = scratch("ts-pad");
    let seqs = read_ts(dir.write("tiny.ts", tiny())).unwrap();
    let batch = pad_sequences(&seqs, &[1, 0, 2]);
    assert_eq!(batch.steps, 3);
    assert_eq!(batch.features, 2);
    assert_eq!(batch.lengths, [1, 3, 2]);
    assert_eq!(batch.labels, [0, 1, 1]);
    #[rustfmt::skip]
    let values = [
        4.0, 40.0,   0.0, 0.0,    0.0, 0.0,
        1.0, 10.0,   2.0, 20.0,   3.0, 30.0,
        5.5, -10.0,  6.5, 0.0,    0.0, 0.0,
    ];
    assert_eq!(batch.values, values);
    #[rustfmt::skip]
    let mask = [
        true, false, false,
        true, true, true,
        true, true, false,
    ];
    assert_eq!(batch.mask, mask);

    let empty = pad_sequences(&seqs, &[]);
    assert_eq!(
        (empty.steps, empty.values.len(), empty.mask.len()),
        (0, 0, 0)
    );
}

#[test]
fn dimensions_come_from_the_first_case_without_a_header() {
    let dir = scratch("ts-nodims");
    let text = "@classLabel true a b\n@data\n1,2,3:a\n4:b\n";
    let seqs: Sequences = read_ts(dir.write("uni.ts", text)).unwrap();
    assert_eq!(seqs.features, 1);
    assert_eq!(seqs.values, [vec![1.0, 2.0, 3.0], vec![4.0]]);
}

fn expect_line_error(test: &str, text: &str, line: usize, needles: &[&str]) {
    common::expect_line_error(test, "bad.ts", text, line, needles, |p| read_ts(p));
}

#[test]
fn non_number_is_rejected_with_its_line() {
    let text = format!("{HEADER}1,2:3,4:low\n1,x:3,4:low\n");
    expect_line_error(
        "ts-nan",
        &text,
        9,
        &["dimension 1, value 2", "`x` is not a finite number"],
    );
    let text = format!("{HEADER}1,2:3,NaN:low\n");
    expect_line_error("ts-nan2", &text, 8, &["dimension 2, value 2", "`NaN`"]);
    let text = format!("{HEADER}1,?:3,4:low\n");
    expect_line_error("ts-missing", &text, 8, &["`?`"]);
}

#[test]
fn mixed_dimension_lengths_are_rejected() {
    let text = format!("{HEADER}1,2,3:4,5:low\n");
    expect_line_error(
        "ts-mixed",
        &text,
        8,
        &[
            "dimension 2 has 2 values but dimension 1 has 3",
            "same length",
        ],
    );
}

#[test]
fn wrong_dimension_count_is_rejected() {
    let text = format!("{HEADER}1:2:3:low\n");
    expect_line_error("ts-dims", &text, 8, &["3 dimensions, expected 2"]);
    let text = "@classLabel true a\n@data\n1:2:a\n1:a\n";
    expect_line_error("ts-dims2", text, 4, &["1 dimensions, expected 2"]);
}

#[test]
fn unknown_class_label_is_rejected() {
    let text = format!("{HEADER}1:2:low\n1:2:medium\n");
    expect_line_error(
        "ts-label",
        &text,
        9,
        &["unknown class label `medium`", "[\"low\", \"high\"]"],
    );
    let text = format!("{HEADER}1,2\n");
    expect_line_error(
        "ts-nolabel",
        &text,
        8,
        &["no `:` between the values and the class label"],
    );
}

#[test]
fn header_problems_are_rejected() {
    expect_line_error(
        "ts-data-first",
        "@classLabel true a\n1:a\n",
        2,
        &["before the `@data` header"],
    );
    expect_line_error(
        "ts-unlabelled",
        "@classLabel false\n@data\n1\n",
        1,
        &["@classLabel true"],
    );
    expect_line_error(
        "ts-no-classes",
        "@classLabel true\n@data\n",
        1,
        &["lists no class labels"],
    );
    expect_line_error(
        "ts-no-header",
        "@dimensions 1\n@data\n1:a\n",
        2,
        &["no `@classLabel"],
    );
    expect_line_error(
        "ts-bad-dims",
        "@dimensions two\n",
        1,
        &["`@dimensions two`"],
    );
}

#[test]
fn missing_data_section_is_rejected() {
    let dir = scratch("ts-nodata");
    let path = dir.write("headers-only.ts", "@problemName X\n@classLabel true a\n");
    let err = read_ts(&path).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    assert_message(&err, &path, &["no `@data` line"]);

    let path = dir.write("no-cases.ts", "@classLabel true a\n@data\n\n");
    assert_message(
        &read_ts(&path).unwrap_err(),
        &path,
        &["no cases after `@data`"],
    );
}
