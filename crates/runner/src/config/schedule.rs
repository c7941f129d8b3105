//! How the learning rate moves over a run.

use serde::{Deserialize, Serialize};

/// The learning-rate schedule: a shape over the run's steps, after an optional linear warmup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Half a cosine from the rate down to zero at the last step (Loshchilov & Hutter 2017).
    Cosine,
    /// The rate, a tenth of it after half the run, a hundredth after three quarters (the
    /// steps of the ResNet papers, placed by share of the run).
    Step,
}

impl LrSchedule {
    /// The rate at `step` (0-based) of `total`, for base rate `lr`, the first `warmup` share of
    /// the steps rising linearly to it (Goyal et al. 2017).
    pub fn rate(self, lr: f64, step: usize, total: usize, warmup: f64) -> f64 {
        let progress = step as f64 / total.max(1) as f64;
        let warm = match warmup > 0.0 && progress < warmup {
            true => (step + 1) as f64 / (warmup * total as f64).ceil().max(1.0),
            false => 1.0,
        };
        let shape = match self {
            Self::Constant => 1.0,
            Self::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Self::Step if progress >= 0.75 => 0.01,
            Self::Step if progress >= 0.5 => 0.1,
            Self::Step => 1.0,
        };
        lr * warm.min(1.0) * shape
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn schedules_have_their_published_shapes() {
        let at = |s: LrSchedule, step| s.rate(0.1, step, 100, 0.0);
        assert_eq!(at(LrSchedule::Constant, 99), 0.1);
        assert_eq!(at(LrSchedule::Cosine, 0), 0.1);
        assert!((at(LrSchedule::Cosine, 50) - 0.05).abs() < 1e-12);
        assert!(at(LrSchedule::Cosine, 99) < 1e-3);
        assert_eq!(at(LrSchedule::Step, 49), 0.1);
        assert!((at(LrSchedule::Step, 50) - 0.01).abs() < 1e-12);
        assert!((at(LrSchedule::Step, 75) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn warmup_rises_linearly_to_the_rate() {
        let rate = |step| LrSchedule::Constant.rate(0.1, step, 100, 0.1);
        assert!((rate(0) - 0.01).abs() < 1e-12);
        assert!((rate(4) - 0.05).abs() < 1e-12);
        assert_eq!(rate(9), 0.1);
        assert_eq!(rate(50), 0.1);
    }
}
