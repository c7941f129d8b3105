//! A corpus as character ids, cut into windows for a language model.

use std::collections::BTreeSet;

/// A text as character ids, for character-level language modelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The distinct characters of the text, sorted; a character's id is its index here.
    pub vocab: Vec<char>,
    /// The text, one id per character.
    pub ids: Vec<u32>,
}

impl Text {
    /// Encode `text` with a vocabulary of exactly the characters it contains.
    pub fn new(text: &str) -> Self {
        let vocab: Vec<char> = text.chars().collect::<BTreeSet<_>>().into_iter().collect();
        // `vocab` is sorted and holds every character, so the insertion point is the index.
        let ids = text
            .chars()
            .map(|c| vocab.partition_point(|&v| v < c) as u32)
            .collect();
        Self { vocab, ids }
    }

    /// Number of distinct characters.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Length in characters.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True for an empty text.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The training pair starting at character `start`: `len` input ids and the `len` ids that
    /// follow each of them (the input shifted by one). `None` if it would run past the end.
    pub fn window(&self, start: usize, len: usize) -> Option<(&[u32], &[u32])> {
        let end = start.checked_add(len)?.checked_add(1)?;
        let ids = self.ids.get(start..end)?;
        Some((&ids[..len], &ids[1..]))
    }

    /// Every non-overlapping window of `len` characters from the start, as [`Text::window`]
    /// gives them; the tail too short for a full window is left out. Empty if `len` is 0.
    pub fn windows(&self, len: usize) -> impl Iterator<Item = (&[u32], &[u32])> {
        // A zero length would give empty windows forever.
        let count = match len {
            0 => 0,
            _ => self.ids.len().saturating_sub(1) / len,
        };
        (0..count).map_while(move |k| self.window(k * len, len))
    }
}
