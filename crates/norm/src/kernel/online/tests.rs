//! The parallel host passes against the sequential loops they replaced, bit for bit: the same
//! arithmetic in the same order per channel, whatever the threads.

use super::*;

/// The forward as it ran before the channels ran in parallel: sample after sample, every
/// channel within each.
fn sequential_forward(
    x: &[f64],
    weights: &[f64],
    [n, c, s]: [usize; 3],
    stream: &OnlineStream,
) -> (Vec<f64>, Vec<f64>) {
    let mut state = stream.lock();
    let a = stream.alpha_forward;
    let mut y = vec![0.0; n * c * s];
    let mut scales = vec![1.0; n * c];
    for sample in 0..n {
        let real: Vec<usize> = (0..s).filter(|&p| weights[sample * s + p] > 0.0).collect();
        if real.is_empty() {
            continue;
        }
        for channel in 0..c {
            let row = (sample * c + channel) * s;
            let (mean, var) = (state.mean[channel], state.var[channel]);
            let scale = (var + stream.epsilon).sqrt();
            scales[sample * c + channel] = scale;
            for &p in &real {
                y[row + p] = (x[row + p] - mean) / scale;
            }
            let count = real.len() as f64;
            let sample_mean = real.iter().map(|&p| x[row + p]).sum::<f64>() / count;
            let sample_var = real
                .iter()
                .map(|&p| (x[row + p] - sample_mean).powi(2))
                .sum::<f64>()
                / count;
            let d = sample_mean - mean;
            state.var[channel] = a * var + (1.0 - a) * sample_var + a * (1.0 - a) * d * d;
            state.mean[channel] = mean + (1.0 - a) * d;
        }
    }
    (y, scales)
}

/// The backward as it ran before the channels ran in parallel.
fn sequential_backward(
    g: &[f64],
    y: &[f64],
    scales: &[f64],
    weights: &[f64],
    [n, c, s]: [usize; 3],
    stream: &OnlineStream,
) -> Vec<f64> {
    let mut state = stream.lock();
    let keep = 1.0 - stream.alpha_backward;
    let mut dx = vec![0.0; n * c * s];
    for sample in 0..n {
        let real: Vec<usize> = (0..s).filter(|&p| weights[sample * s + p] > 0.0).collect();
        if real.is_empty() {
            continue;
        }
        let count = real.len() as f64;
        for channel in 0..c {
            let row = (sample * c + channel) * s;
            let v = state.v[channel];
            let corrected: Vec<f64> = real
                .iter()
                .map(|&p| g[row + p] - keep * v * y[row + p])
                .collect();
            let along_y = real
                .iter()
                .zip(&corrected)
                .map(|(&p, gt)| gt * y[row + p])
                .sum::<f64>();
            state.v[channel] = v + along_y / count;
            let scale = scales[sample * c + channel];
            let u = state.u[channel];
            let mut total = 0.0;
            for (&p, gt) in real.iter().zip(&corrected) {
                let d = gt / scale - keep * u;
                dx[row + p] = d;
                total += d;
            }
            state.u[channel] = u + total / count;
        }
    }
    dx
}

fn stream(c: usize) -> OnlineStream {
    OnlineStream {
        state: Arc::new(Mutex::new(StreamState {
            mean: vec![0.0; c],
            var: vec![1.0; c],
            u: vec![0.0; c],
            v: vec![0.0; c],
        })),
        alpha_forward: 0.999,
        alpha_backward: 0.99,
        epsilon: 1e-5,
    }
}

/// Deterministic values with a per-index offset.
fn values(len: usize, seed: u64) -> Vec<f64> {
    (0..len as u64)
        .map(|i| {
            let k = (i + 1).wrapping_mul(2654435761).wrapping_add(seed * 97) % 1000;
            (k as f32 / 250.0 - 2.0 + (i % 5) as f32) as f64
        })
        .collect()
}

#[test]
fn the_parallel_passes_give_the_sequential_bits_call_after_call() {
    // Channels in whole blocks of eight, with a tail of one and of seven, and fewer than a
    // block; rows of one position and of hundreds.
    let shapes = [
        [0, 3, 4],
        [1, 1, 1],
        [5, 3, 1],
        [4, 7, 9],
        [2, 8, 16],
        [3, 9, 300],
        [2, 17, 5],
        [16, 64, 33],
    ];
    for shape @ [n, c, s] in shapes {
        // Every other sample ends early; one has no real position at all.
        let weights: Vec<f64> = (0..n * s)
            .map(|i| {
                let (sample, p) = (i / s, i % s);
                let length = if sample % 2 == 0 { s } else { s / 2 };
                f64::from(u8::from(sample != 3 && p < length))
            })
            .collect();
        let (parallel, sequential) = (stream(c), stream(c));
        let (parallel_f32, sequential_f32) = (stream(c), stream(c));
        for call in 0..3 {
            let x = values(n * c * s, call);
            let g = values(n * c * s, call + 10);
            let ours = forward_host(&x, &weights, shape, &parallel);
            let theirs = sequential_forward(&x, &weights, shape, &sequential);
            assert_eq!(ours, theirs, "forward of {shape:?}, call {call}");
            let dx = backward_host(&g, &ours.0, &ours.1, &weights, shape, &parallel);
            let want = sequential_backward(&g, &theirs.0, &theirs.1, &weights, shape, &sequential);
            assert_eq!(dx, want, "backward of {shape:?}, call {call}");
            assert_eq!(
                *parallel.lock(),
                *sequential.lock(),
                "state of {shape:?}, call {call}"
            );

            // f32 tensors: before, their values went to f64 and the results back through
            // burn's conversion (`as f32`); the passes now read and write f32 themselves.
            let to_f32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let to_f64 = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let (x32, g32) = (to_f32(&x), to_f32(&g));
            let (y, scales) = forward_host(&x32, &weights, shape, &parallel_f32);
            let (y_want, scales_want) =
                sequential_forward(&to_f64(&x32), &weights, shape, &sequential_f32);
            assert_eq!((&y, &scales), (&to_f32(&y_want), &to_f32(&scales_want)));
            let dx = backward_host(&g32, &y, &scales, &weights, shape, &parallel_f32);
            let (y, scales) = (to_f64(&y), to_f64(&scales));
            let want =
                sequential_backward(&to_f64(&g32), &y, &scales, &weights, shape, &sequential_f32);
            assert_eq!(dx, to_f32(&want), "f32 backward of {shape:?}, call {call}");
            assert_eq!(*parallel_f32.lock(), *sequential_f32.lock());
        }
    }
}

/// f32 and f64 tensors on flex are read in place, other floats through host copies: an f16
/// tensor gives the f64 pass's output rounded to f16, and an f32 one the f32 pass's, bit for
/// bit, with the stream advanced alike; no samples, no positions and one value included.
#[test]
fn flex_tensors_of_every_float_type_take_the_host_passes() {
    let device = Device::flex();
    let tensor = |values: Vec<f64>, shape: [usize; 3], dtype: DType| {
        Tensor::<3>::from_data(TensorData::new(values, shape), &device).cast(dtype)
    };
    let shapes = [[3, 9, 4], [0, 3, 4], [2, 3, 0], [1, 1, 1]];
    for (shape @ [n, c, s], dtype) in shapes
        .into_iter()
        .flat_map(|shape| [DType::F16, DType::F32, DType::F64].map(|dtype| (shape, dtype)))
    {
        let x = values(n * c * s, 5);
        let weights = vec![1.0; n * s];
        let input = tensor(x.clone(), shape, dtype);
        let exact: Vec<f64> = input
            .to_data()
            .convert_dtype(DType::F64)
            .try_to_vec()
            .unwrap();
        let (ours, theirs) = (stream(c), stream(c));
        let y = online_normalize(input, tensor(weights.clone(), [n, 1, s], dtype), &ours);
        let want = match dtype {
            DType::F32 => {
                let exact: Vec<f32> = exact.iter().map(|&v| v as f32).collect();
                TensorData::new(forward_host(&exact, &weights, shape, &theirs).0, shape)
            }
            _ => TensorData::new(forward_host(&exact, &weights, shape, &theirs).0, shape)
                .convert_dtype(dtype),
        };
        assert_eq!(y.to_data(), want, "{shape:?} {dtype:?}");
        assert_eq!(*ours.lock(), *theirs.lock(), "{shape:?} {dtype:?}");
    }
}
