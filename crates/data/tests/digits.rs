mod common;

use common::{assert_message, gzip};
use normlab_data::{DataError, DataRoot, digits_from};
use normlab_testkit::scratch;

#[test]
fn embedded_digits_load() {
    let set = DataRoot::default().digits().unwrap();
    assert_eq!(set.len(), 1797);
    assert_eq!(set.shape, [1, 8, 8]);
    assert_eq!(set.example_len(), 64);
    assert_eq!(set.pixels.len(), 1797 * 64);
    assert_eq!(set.classes, 10);
    // The file cycles through the digits at its start.
    assert_eq!(set.labels[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);

    let mut counts = [0usize; 10];
    for &label in &set.labels {
        counts[label] += 1;
    }
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);

    // Raw values, unscaled: the first image's top row, and the full 0..=16 range.
    assert_eq!(
        set.example(0)[..8],
        [0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(set.pixels.iter().copied().fold(f32::MIN, f32::max), 16.0);
    assert_eq!(set.pixels.iter().copied().fold(f32::MAX, f32::min), 0.0);
    assert_eq!(
        set.pixels.iter().map(|&p| f64::from(p)).sum::<f64>(),
        561_718.0
    );
}

/// A line of 64 pixels then the label.
fn row(pixel: &str, label: &str) -> String {
    let mut fields = vec![pixel; 64];
    fields.push(label);
    fields.join(",")
}

#[test]
fn plain_and_gzipped_csv_load() {
    let dir = scratch("digits-ok");
    let text = format!("{}\n{}\n", row("3", "7"), row("16", "0"));
    for path in [
        dir.write("d.csv", &text),
        dir.write("d.csv.gz", gzip(text.as_bytes())),
    ] {
        let set = digits_from(&path).unwrap();
        assert_eq!(set.labels, [7, 0]);
        assert_eq!(set.example(0), [3.0; 64]);
        assert_eq!(set.example(1), [16.0; 64]);
    }
}

fn expect_line_error(test: &str, text: &str, line: usize, needles: &[&str]) {
    common::expect_line_error(test, "digits.csv", text, line, needles, |p| digits_from(p));
}

#[test]
fn wrong_column_count_is_rejected() {
    let full = row("1", "2");
    let (_, short) = full.split_once(',').unwrap();
    let text = format!("{full}\n{short}\n");
    expect_line_error("digits-columns", &text, 2, &["64 columns, expected 65"]);
}

#[test]
fn bad_pixel_is_rejected() {
    let text = format!("{}\n", row("17", "2"));
    expect_line_error("digits-pixel", &text, 1, &["column 1", "`17`", "0..=16"]);
    let text = format!("{}\n", row("x", "2"));
    expect_line_error("digits-nan", &text, 1, &["`x` is not a number"]);
}

#[test]
fn wrong_label_is_rejected() {
    let text = format!("{}\n{}\n{}\n", row("0", "1"), row("0", "2"), row("0", "10"));
    expect_line_error(
        "digits-label",
        &text,
        3,
        &["label `10` is not a class in 0..10"],
    );
}

#[test]
fn non_utf8_line_is_rejected() {
    let dir = scratch("digits-utf8");
    let mut bytes = format!("{}\n", row("0", "1")).into_bytes();
    bytes.extend_from_slice(&[0xff, b'\n']);
    let path = dir.write("latin1.csv", bytes);
    let err = digits_from(&path).unwrap_err();
    assert!(matches!(err, DataError::BadLine { line: 2, .. }), "{err:?}");
    assert_message(&err, &path, &["unreadable CSV"]);
}

#[test]
fn empty_file_is_rejected() {
    let dir = scratch("digits-empty");
    let path = dir.write("empty.csv", "");
    assert_message(&digits_from(&path).unwrap_err(), &path, &["no images"]);
}
