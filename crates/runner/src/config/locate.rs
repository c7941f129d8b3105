//! Where a field of an experiment file is written, from the spans the toml parser records for
//! every key and value.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Finds the lines of fields in the text of one experiment file.
pub(crate) struct Locator<'a> {
    text: &'a str,
    /// `None` if the text does not parse; every field is then on line 1.
    document: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            document: DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line that best places the dotted `field`: where the deepest part of it that
    /// the file sets is written (a key of a section, or of an inline table). A number picks an
    /// item of a list: `model.norm.1.groups` is `groups` in the second norm of a grid axis, and
    /// `extra.1.train.seed` the second `[[extra]]` block's seed. Line 1 if nothing of the field
    /// is in the file.
    pub(crate) fn line(&self, field: &str) -> usize {
        let Some(document) = &self.document else {
            return 1;
        };
        let mut table = document.get_ref();
        let mut found: Option<Range<usize>> = None;
        let mut parts = field.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some((key, item)) = table.get_key_value(part) else {
                break;
            };
            found = Some(key.span());
            let item = match item.get_ref() {
                DeValue::Array(items) => {
                    let Some(item) = parts
                        .peek()
                        .and_then(|index| index.parse::<usize>().ok())
                        .and_then(|index| items.get(index))
                    else {
                        break;
                    };
                    parts.next();
                    found = Some(item.span());
                    item
                }
                _ => item,
            };
            match item.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found.map_or(1, |span| self.line_of(span.start))
    }

    /// The 1-based line of byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}
