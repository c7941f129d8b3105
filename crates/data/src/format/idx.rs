//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::format::gzip::read_maybe_gzip;
use crate::images::Images;

/// IDX type byte for unsigned bytes, the only type the MNIST family uses.
const DTYPE_U8: u8 = 0x08;

/// The content of an IDX file of unsigned bytes (the MNIST format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// Size of each axis, outermost first: `[N, H, W]` for images, `[N]` for labels.
    pub dims: Vec<usize>,
    /// The values, row-major, `dims.iter().product()` of them.
    pub data: Vec<u8>,
}

/// Read an IDX file, raw or gzipped (detected by the `1f 8b` magic, not the file name).
///
/// Layout: two zero bytes, the type byte (only `0x08`, unsigned bytes, is accepted), the number
/// of dims, each dim as a big-endian `u32`, then exactly `product(dims)` bytes.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    parse(path, read_maybe_gzip(path)?)
}

fn parse(path: &Path, mut bytes: Vec<u8>) -> Result<Idx> {
    let Some(&[zero_a, zero_b, dtype, ndims]) = bytes.first_chunk::<4>() else {
        return Err(DataError::BadMagic {
            path: path.to_owned(),
            found: bytes.to_vec(),
        });
    };
    if zero_a != 0 || zero_b != 0 {
        return Err(DataError::BadMagic {
            path: path.to_owned(),
            found: bytes[..4].to_vec(),
        });
    }
    if dtype != DTYPE_U8 {
        return Err(DataError::UnsupportedDtype {
            path: path.to_owned(),
            dtype,
        });
    }

    let header_len = 4 + 4 * usize::from(ndims);
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return Err(DataError::format(
            path,
            format!(
                "IDX header with {ndims} dims needs {header_len} bytes but the file has {}",
                bytes.len()
            ),
        ));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();

    let payload_len = bytes.len() - header_len;
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if expected != Some(payload_len) {
        return Err(DataError::PayloadSize {
            path: path.to_owned(),
            expected: expected.unwrap_or(usize::MAX),
            actual: payload_len,
            dims,
        });
    }
    // Reuse the buffer: MNIST's training images are 47 MB.
    bytes.drain(..header_len);
    Ok(Idx { dims, data: bytes })
}

/// Images from an IDX image file (`[N, H, W]`) and an IDX label file (`[N]`, each `< classes`),
/// raw or gzipped.
pub fn images_from_idx(images: &Path, labels: &Path, classes: usize) -> Result<Images> {
    let pixels = read_idx(images)?;
    let &[n, height, width] = pixels.dims.as_slice() else {
        return Err(DataError::format(
            images,
            format!("expected image dims [N, H, W], found {:?}", pixels.dims),
        ));
    };
    let label_idx = read_idx(labels)?;
    if label_idx.dims != [n] {
        return Err(DataError::format(
            labels,
            format!(
                "expected label dims [{n}] to match the {n} images of {}, found {:?}",
                images.display(),
                label_idx.dims
            ),
        ));
    }
    if let Some((i, &label)) = label_idx
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= classes)
    {
        return Err(DataError::format(
            labels,
            format!("example {i} has label {label}, but there are only {classes} classes"),
        ));
    }
    Ok(Images {
        pixels: pixels.data.into_iter().map(f32::from).collect(),
        labels: label_idx.data.into_iter().map(usize::from).collect(),
        shape: [1, height, width],
        classes,
    })
}
