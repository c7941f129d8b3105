//! Where a field of an experiment file is written, from the spans the toml parser records for
//! every key and value.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::EXTRA;

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
    /// the file sets is written (a key of a section, or of an inline table; a number picks a
    /// table of an array of tables). If that key holds a list (a grid axis) and `value` is
    /// given, the line of the list item that is `value` (or whose `kind` is `value`), for lists
    /// written over several lines. Line 1 if nothing of the field is in the file.
    pub(crate) fn line(&self, field: &str, value: Option<&str>) -> usize {
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
            match item.get_ref() {
                DeValue::Table(inner) => table = inner,
                // `extra.1.train.seed`: a table of an array of tables, by its index.
                DeValue::Array(items)
                    if let Some(DeValue::Table(inner)) = parts
                        .peek()
                        .and_then(|index| index.parse::<usize>().ok())
                        .and_then(|index| items.get(index))
                        .map(Spanned::get_ref) =>
                {
                    parts.next();
                    table = inner;
                }
                DeValue::Array(items) => {
                    if let Some(item) = value.and_then(|v| items.iter().find(|i| holds(i, v))) {
                        found = Some(item.span());
                    }
                    break;
                }
                _ => break,
            }
        }
        found.map_or(1, |span| self.line_of(span.start))
    }

    /// The dotted field and line of the first value in the file that is `value`: a string, an
    /// item of a list, or the `kind` of an inline table. Serde reports an unknown name of an
    /// internally tagged enum (a norm's `kind`) at the enum's parent, so its field is found by
    /// its value.
    pub(crate) fn holding(&self, value: &str) -> Option<(String, usize)> {
        let document = self.document.as_ref()?;
        let (field, span) = find_holding(document.get_ref(), value)?;
        Some((field, self.line_of(span.start)))
    }

    /// The dotted field and line of the key `key` of the dotted table `parent`: the key of that
    /// table itself, else the first one below it in file order (in its tables, inline tables and
    /// the tables of its lists), else the first one below `parent` in an `[[extra]]` block.
    /// Serde reports an unknown field inside an internally tagged enum nested in another (a
    /// norm's option, in a model tagged by `kind` too) at the outer enum, so it is found by name.
    pub(crate) fn key_below(&self, parent: &str, key: &str) -> Option<(String, usize)> {
        let document = self.document.as_ref()?.get_ref();
        let below = |table: &DeTable| {
            let table = table_at(table, parent)?;
            match table.get_key_value(key) {
                Some((name, _)) => Some((key.to_string(), name.span())),
                None => find_key(table, key),
            }
        };
        let (field, span) = match below(document) {
            Some((rest, span)) => (format!("{parent}.{rest}"), span),
            None => {
                let Some(DeValue::Array(blocks)) = document.get(EXTRA).map(Spanned::get_ref) else {
                    return None;
                };
                let (rest, span) = blocks.iter().find_map(|block| match block.get_ref() {
                    DeValue::Table(block) => below(block),
                    _ => None,
                })?;
                (format!("{EXTRA}.{parent}.{rest}"), span)
            }
        };
        Some((field, self.line_of(span.start)))
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

/// The dotted key (within `table`) and the span of the first value that is `value`, depth
/// first in file order.
fn find_holding(table: &DeTable, value: &str) -> Option<(String, Range<usize>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, item) in entries {
        let found = match item.get_ref() {
            _ if holds(item, value) => Some((String::new(), item.span())),
            DeValue::Array(items) => items
                .iter()
                .find(|i| holds(i, value))
                .map(|i| (String::new(), i.span())),
            DeValue::Table(inner) => find_holding(inner, value),
            _ => None,
        };
        if let Some((rest, span)) = found {
            let field = match rest.is_empty() {
                true => key.get_ref().to_string(),
                false => format!("{}.{rest}", key.get_ref()),
            };
            return Some((field, span));
        }
    }
    None
}

/// The table at the dotted `path` below `table`, if every part of it is a table.
fn table_at<'t, 'a>(mut table: &'t DeTable<'a>, path: &str) -> Option<&'t DeTable<'a>> {
    for part in path.split('.') {
        match table.get(part).map(Spanned::get_ref) {
            Some(DeValue::Table(inner)) => table = inner,
            _ => return None,
        }
    }
    Some(table)
}

/// The dotted key (within `table`) and the span of the first key `key`, depth first in file
/// order through tables and the tables of lists.
fn find_key(table: &DeTable, key: &str) -> Option<(String, Range<usize>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    for (name, item) in entries {
        if name.get_ref() == key {
            return Some((key.to_string(), name.span()));
        }
        let found = match item.get_ref() {
            DeValue::Table(inner) => find_key(inner, key),
            DeValue::Array(items) => items.iter().find_map(|i| match i.get_ref() {
                DeValue::Table(inner) => find_key(inner, key),
                _ => None,
            }),
            _ => None,
        };
        if let Some((rest, span)) = found {
            return Some((format!("{}.{rest}", name.get_ref()), span));
        }
    }
    None
}

/// True when `item` is the string `value`, or a table whose `kind` is `value`.
fn holds(item: &Spanned<DeValue>, value: &str) -> bool {
    match item.get_ref() {
        DeValue::String(s) => s == value,
        DeValue::Table(table) => table
            .get("kind")
            .is_some_and(|kind| matches!(kind.get_ref(), DeValue::String(s) if s == value)),
        _ => false,
    }
}
