//! Colours: one per norm label, fixed by kind, the same in every plot of an experiment.

use crate::plot::figure::{NEUTRAL, Rgb};

/// The colour of each norm kind's plain label (or first variant).
pub(crate) const KIND_COLORS: [(&str, Rgb); 11] = [
    ("none", Rgb(110, 110, 110)),
    ("batch", Rgb(31, 119, 180)),
    ("layer", Rgb(255, 127, 14)),
    ("instance", Rgb(44, 160, 44)),
    ("group", Rgb(214, 39, 40)),
    ("rms", Rgb(148, 103, 189)),
    ("batch_renorm", Rgb(0, 128, 128)),
    ("frn", Rgb(218, 165, 32)),
    ("evonorm_s0", Rgb(112, 48, 160)),
    ("evonorm_b0", Rgb(60, 120, 60)),
    ("online", Rgb(0, 0, 0)),
];

/// Colours of further variants of a kind, handed out in sorted label order.
pub(crate) const VARIANT_COLORS: [Rgb; 6] = [
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
    Rgb(0, 0, 128),
    Rgb(255, 152, 150),
];

/// The colour of every norm label of an experiment.
pub(crate) struct Palette {
    colors: Vec<(String, Rgb)>,
}

impl Palette {
    /// Deterministic in the set of `(label, norm kind)` pairs: the label that is its kind's
    /// bare name (else the first of that kind in sorted order) gets the kind's colour; the
    /// rest, sorted, get the variant colours in turn.
    pub(crate) fn new(labels: &[(String, &str)]) -> Self {
        let mut sorted = labels.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut colors: Vec<(String, Rgb)> = Vec::new();
        for (kind, color) in KIND_COLORS {
            let base = sorted
                .iter()
                .find(|(label, _)| label == kind)
                .or_else(|| sorted.iter().find(|(_, of)| *of == kind));
            if let Some((label, _)) = base {
                colors.push((label.clone(), color));
            }
        }
        let mut variants = VARIANT_COLORS.iter().cycle();
        for (label, _) in sorted {
            if !colors.iter().any(|(l, _)| *l == label) {
                let color = *variants.next().expect("a cycle never ends");
                colors.push((label, color));
            }
        }
        Self { colors }
    }

    pub(crate) fn color(&self, label: &str) -> Rgb {
        self.colors
            .iter()
            .find(|(l, _)| l == label)
            .map_or(NEUTRAL, |(_, color)| *color)
    }
}
