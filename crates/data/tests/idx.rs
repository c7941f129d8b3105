mod common;

use common::{assert_message, gzip, idx_bytes};
use normlab_data::{DataError, Idx, images_from_idx, read_idx};
use normlab_testkit::scratch;

fn sample() -> (Vec<u8>, Idx) {
    let payload: Vec<u8> = (0..24).map(|i| i * 10).collect();
    let expected = Idx {
        dims: vec![2, 3, 4],
        data: payload.clone(),
    };
    (idx_bytes(&[2, 3, 4], &payload), expected)
}

#[test]
fn raw_idx_round_trips() {
    let dir = scratch("idx-raw");
    let (bytes, expected) = sample();
    assert_eq!(
        read_idx(dir.write("a-idx3-ubyte", &bytes)).unwrap(),
        expected
    );
}

#[test]
fn gzipped_idx_is_detected_by_content_not_name() {
    let dir = scratch("idx-gz");
    let (bytes, expected) = sample();
    let packed = gzip(&bytes);
    assert_eq!(
        read_idx(dir.write("a-idx3-ubyte.gz", &packed)).unwrap(),
        expected
    );
    assert_eq!(read_idx(dir.write("no-suffix", &packed)).unwrap(), expected);
}

#[test]
fn image_and_label_files_become_images() {
    let dir = scratch("idx-images");
    let pixels: Vec<u8> = (0..12).collect();
    let images = dir.write("images", idx_bytes(&[3, 2, 2], &pixels));
    let labels = dir.write("labels", gzip(&idx_bytes(&[3], &[0, 9, 4])));

    let set = images_from_idx(&images, &labels, 10).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.shape, [1, 2, 2]);
    assert_eq!(set.classes, 10);
    assert_eq!(set.labels, [0, 9, 4]);
    assert_eq!(set.example(1), [4.0, 5.0, 6.0, 7.0]);
    assert_eq!(
        set.gather(&[2, 0]),
        [8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]
    );
}

#[test]
fn label_out_of_range_is_rejected() {
    let dir = scratch("idx-label");
    let images = dir.write("images", idx_bytes(&[3, 1, 1], &[1, 2, 3]));
    let labels = dir.write("labels", idx_bytes(&[3], &[0, 9, 10]));
    let err = images_from_idx(&images, &labels, 10).unwrap_err();
    assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    assert_message(&err, &labels, &["example 2 has label 10", "10 classes"]);
}

#[test]
fn label_count_must_match_image_count() {
    let dir = scratch("idx-count");
    let images = dir.write("images", idx_bytes(&[3, 1, 1], &[1, 2, 3]));
    let labels = dir.write("labels", idx_bytes(&[2], &[0, 1]));
    let err = images_from_idx(&images, &labels, 10).unwrap_err();
    assert_message(&err, &labels, &["expected label dims [3]", "found [2]"]);
}

#[test]
fn images_need_three_dims() {
    let dir = scratch("idx-image-dims");
    let images = dir.write("images", idx_bytes(&[3, 2], &[0; 6]));
    let labels = dir.write("labels", idx_bytes(&[3], &[0, 1, 2]));
    let err = images_from_idx(&images, &labels, 10).unwrap_err();
    assert_message(
        &err,
        &images,
        &["expected image dims [N, H, W]", "found [3, 2]"],
    );
}

#[test]
fn bad_magic_is_rejected() {
    let dir = scratch("idx-magic");
    let mut bytes = idx_bytes(&[2], &[1, 2]);
    bytes[0] = 0x50;
    let path = dir.write("bad", &bytes);
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert_message(&err, &path, &["not an IDX file", "[50, 00, 08, 01]"]);

    let path = dir.write("tiny", [0u8, 0]);
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert_message(&err, &path, &["not an IDX file"]);
}

#[test]
fn non_byte_dtype_is_rejected() {
    let dir = scratch("idx-dtype");
    let mut bytes = idx_bytes(&[1], &[0, 0, 0, 0]);
    bytes[2] = 0x0d; // IDX float32
    let path = dir.write("floats", &bytes);
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(err, DataError::UnsupportedDtype { dtype: 0x0d, .. }),
        "{err:?}"
    );
    assert_message(&err, &path, &["data type 0x0d is not supported"]);
}

#[test]
fn truncated_header_is_rejected() {
    let dir = scratch("idx-header");
    let bytes = idx_bytes(&[2, 3, 4], &[]);
    let path = dir.write("header", &bytes[..10]);
    let err = read_idx(&path).unwrap_err();
    assert_message(
        &err,
        &path,
        &["header with 3 dims needs 16 bytes but the file has 10"],
    );
}

#[test]
fn short_payload_is_rejected() {
    let dir = scratch("idx-short");
    let path = dir.write("short", idx_bytes(&[2, 3], &[0; 5]));
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::PayloadSize {
                expected: 6,
                actual: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert_message(
        &err,
        &path,
        &["dims [2, 3] need 6 payload bytes but the file has 5"],
    );
}

#[test]
fn dims_that_do_not_match_the_payload_are_rejected() {
    let dir = scratch("idx-long");
    let path = dir.write("long", idx_bytes(&[2, 3], &[0; 8]));
    let err = read_idx(&path).unwrap_err();
    assert_message(
        &err,
        &path,
        &["dims [2, 3] need 6 payload bytes but the file has 8"],
    );

    // A product that overflows usize cannot match any payload either.
    let path = dir.write("huge", idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[0; 4]));
    let err = read_idx(&path).unwrap_err();
    assert!(
        matches!(err, DataError::PayloadSize { actual: 4, .. }),
        "{err:?}"
    );
}

#[test]
fn truncated_gzip_is_rejected() {
    let dir = scratch("idx-gzip");
    let (bytes, _) = sample();
    let packed = gzip(&bytes);
    // Cut inside the compressed stream, and cut only the CRC/size trailer.
    for cut in [packed.len() / 2, packed.len() - 4] {
        let path = dir.write(&format!("cut-{cut}.gz"), &packed[..cut]);
        let err = read_idx(&path).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err:?}");
        assert_message(&err, &path, &["corrupt or truncated gzip"]);
    }
}

#[test]
fn missing_file_names_the_file() {
    let dir = scratch("idx-missing");
    let path = dir.path().join("nowhere-idx1-ubyte");
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_message(&err, &path, &["cannot read"]);
}
