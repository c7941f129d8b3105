//! Property tests of the experiment-file loader, `Experiment::parse`: whatever text it is given,
//! it returns. The committed experiment files, cut short, with lines deleted, inserted, replaced
//! or duplicated, with values swapped for values of other types, or with arbitrary text put in,
//! and arbitrary text on its own, give an `Experiment` whose grid is consistent, or an error that
//! names the file, and where the error gives a line, a line the text has. Never a panic.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use normlab_runner::config::{ConfigError, Experiment};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;

/// The committed experiment files, `(path, text)`, sorted by path: the valid seeds.
static SEEDS: LazyLock<Vec<(PathBuf, String)>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut seeds: Vec<(PathBuf, String)> = fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("list experiments/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| {
            let text = fs::read_to_string(&path).expect("read an experiment file");
            (path, text)
        })
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "no experiment files in {}",
        dir.display()
    );
    seeds
});

/// One of the committed experiment files.
fn seed() -> impl Strategy<Value = (PathBuf, String)> {
    select(SEEDS.clone())
}

// ---------------------------------------------------------------------------------------------
// What every parse must give.

/// Lines of `text` as the loader and the TOML parser number them: `\n` ends a line, and the
/// position after a final `\n` is on a line of its own.
fn line_count(text: &str) -> usize {
    text.matches('\n').count() + 1
}

/// The line a TOML syntax error gives, from the parser's "at line N, column M".
fn syntax_line(message: &str) -> Option<usize> {
    let rest = &message[message.find("at line ")? + "at line ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Parses `text` as if read from `path` and checks what the loader promises for any text.
fn parse_checked(path: &Path, text: &str) -> Result<(), TestCaseError> {
    let lines = line_count(text);
    match Experiment::parse(path, text.to_string()) {
        Ok(experiment) => {
            prop_assert_eq!(&experiment.path, path);
            prop_assert_eq!(&experiment.text, text);
            // Every axis has a value, so the grid has at least one run.
            prop_assert!(!experiment.points.is_empty());
            let mut ids = std::collections::HashSet::new();
            for point in &experiment.points {
                prop_assert_eq!(point.axes.len(), experiment.axes.len());
                prop_assert!(ids.insert(&point.id), "run id {} twice", point.id);
            }
        }
        Err(err) => {
            let message = err.to_string();
            let shown = path.display().to_string();
            prop_assert!(
                message.contains(&shown),
                "message does not name {shown}: {message}"
            );
            let line = match &err {
                ConfigError::Field { line, .. } => {
                    prop_assert!(
                        message.starts_with(&format!("{shown}:{line}: ")),
                        "{message}"
                    );
                    Some(*line)
                }
                ConfigError::Syntax { message, .. } => syntax_line(message),
                ConfigError::Io { .. } => {
                    prop_assert!(false, "parse reads no file: {message}");
                    None
                }
            };
            if let Some(line) = line {
                prop_assert!(
                    (1..=lines).contains(&line),
                    "line {line} of a text of {lines} lines: {message}"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mutating experiment files.

/// TOML values of every type, the kinds the schema expects and the kinds it does not: numbers
/// at their limits, NaN and infinities, strings that name (or nearly name) options, lists
/// (empty, of lists, of tables) that make or break grid axes, inline tables, dates.
fn value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        // Plausible values, which a field often takes: the grid expands and the checks of
        // the schema, the norms and the models run on them.
        (1..64u32).prop_map(|v| v.to_string()),
        (0.0..1.0f64).prop_map(|v| format!("{v:?}")),
        select(vec![
            "0",
            "1",
            "-1",
            "2",
            "3",
            "26",
            "9223372036854775807",
            "-9223372036854775808",
            "0.0",
            "-0.0",
            "0.5",
            "1.0",
            "-1.5",
            "1e308",
            "5e-324",
            "nan",
            "inf",
            "-inf",
            "true",
            "false",
            "1979-05-27",
            "1979-05-27T07:32:00Z",
        ])
        .prop_map(String::from),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        select(vec![
            "digits",
            "files",
            "mlp",
            "cnn",
            "recurrent",
            "lstm",
            "batch",
            "group",
            "layer",
            "none",
            "online",
            "csv",
            "idx",
            "ts",
            "text",
            "sgd",
            "adam",
            "cosine",
            "two_classes",
            "z_score",
            "",
        ])
        .prop_map(|s| format!("{s:?}")),
        "[a-z_]{0,10}".prop_map(|s| format!("{s:?}")),
    ];
    scalar.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(", "))),
            vec((select(KEYS), inner), 0..3).prop_map(|fields| {
                let fields: Vec<String> =
                    fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

/// Keys of the schema (of every section, so also in the wrong one) and some it does not have.
const KEYS: &[&str] = &[
    "description",
    "set",
    "files",
    "format",
    "train",
    "label",
    "shape",
    "scaling",
    "scope",
    "train_size",
    "valid_size",
    "valid_fraction",
    "seq_len",
    "kind",
    "hidden",
    "channels",
    "cell",
    "layers",
    "norm",
    "groups",
    "per_step",
    "gamma_init",
    "weight_standardization",
    "epsilon",
    "momentum",
    "batch_size",
    "seed",
    "lr",
    "lr_reference_batch",
    "samples",
    "epochs",
    "evals",
    "eval_batch_size",
    "eval_lengths",
    "warmup",
    "batches",
    "probe",
    "every",
    "gradient_flow",
    "model.norm",
    "train.seed",
    "data.set",
    "extra",
    "unknown_key",
];

/// A line to put into a file: a field, a section header, a comment, or any text.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (select(KEYS), value()).prop_map(|(key, value)| format!("{key} = {value}")),
        2 => select(vec![
            "[data]",
            "[model]",
            "[train]",
            "[[extra]]",
            "[model.norm]",
            "[train.probe]",
            "[data.files]",
            "[[train]]",
            "[other]",
            "# a comment",
            "",
            "\"\"\"",
            "description = \"\"\"",
        ])
        .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// One change to an experiment file. Positions are shares of the current length, so that an
/// edit shrinks along with the file.
#[derive(Debug, Clone)]
enum Edit {
    /// Cut the text here (at the char boundary at or before).
    Truncate(Index),
    DeleteLine(Index),
    InsertLine(Index, String),
    ReplaceLine(Index, String),
    /// Write a line twice: a duplicate key, or a section opened twice.
    DuplicateLine(Index),
    /// Give the field of a `key = value` line another value (of any type).
    ReplaceValue(Index, String),
    /// Replace the token around a position (between `=`, `,`, brackets, braces, spaces) with a
    /// value: an item of a list or a field of an inline table of another type.
    ReplaceToken(Index, String),
    /// Put arbitrary text at a position.
    InsertText(Index, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Mostly changes of values: they get past the TOML parser to the loader's own checks.
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => any::<Index>().prop_map(Edit::DeleteLine),
        1 => (any::<Index>(), line()).prop_map(|(at, line)| Edit::InsertLine(at, line)),
        1 => (any::<Index>(), line()).prop_map(|(at, line)| Edit::ReplaceLine(at, line)),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        3 => (any::<Index>(), value()).prop_map(|(at, value)| Edit::ReplaceValue(at, value)),
        3 => (any::<Index>(), value()).prop_map(|(at, value)| Edit::ReplaceToken(at, value)),
        1 => (any::<Index>(), any::<String>()).prop_map(|(at, text)| Edit::InsertText(at, text)),
    ]
}

/// The char boundary at or before byte `at`.
fn char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

impl Edit {
    fn apply(&self, text: &mut String) {
        let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
        let line_at = |at: &Index| at.index(lines.len());
        match self {
            Edit::Truncate(at) => {
                let end = char_boundary(text, at.index(text.len() + 1));
                text.truncate(end);
                return;
            }
            Edit::InsertText(at, new) => {
                let at = char_boundary(text, at.index(text.len() + 1));
                text.insert_str(at, new);
                return;
            }
            Edit::ReplaceToken(at, value) => {
                let at = char_boundary(text, at.index(text.len() + 1));
                let separator = |c: char| "=,[]{}\n ".contains(c);
                let start = text[..at].rfind(separator).map_or(0, |i| i + 1);
                let end = text[at..].find(separator).map_or(text.len(), |i| at + i);
                text.replace_range(start..end, value);
                return;
            }
            Edit::DeleteLine(at) => {
                lines.remove(line_at(at));
            }
            Edit::InsertLine(at, line) => lines.insert(at.index(lines.len() + 1), line.clone()),
            Edit::ReplaceLine(at, line) => {
                let at = line_at(at);
                lines[at] = line.clone();
            }
            Edit::DuplicateLine(at) => {
                let at = line_at(at);
                lines.insert(at, lines[at].clone());
            }
            Edit::ReplaceValue(at, value) => {
                // The field lines only; a file without any is left as it is.
                let fields: Vec<usize> = (0..lines.len())
                    .filter(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains('='))
                    .collect();
                if fields.is_empty() {
                    return;
                }
                let line = &mut lines[fields[at.index(fields.len())]];
                let key_end = line.find('=').expect("a field line has `=`");
                line.replace_range(key_end + 1.., &format!(" {value}"));
            }
        }
        *text = lines.join("\n");
    }
}

/// One to four edits, or just a cut.
fn damage() -> impl Strategy<Value = Vec<Edit>> {
    prop_oneof![
        1 => any::<Index>().prop_map(|at| vec![Edit::Truncate(at)]),
        4 => vec(edit(), 1..5),
    ]
}

/// A key no table of the schema has.
const UNKNOWN: &str = "zz_unknown";

/// The places in `text` where a key can be added to a table: `(byte offset, 1-based line,
/// what to insert)`. After a section header (`[train]`, `[[extra]]`), a line of its own; just
/// inside the `{` of an inline table (a norm, a scaling, a probe), a field before the others.
fn table_openings(text: &str) -> Vec<(usize, usize, String)> {
    let mut openings = Vec::new();
    let mut offset = 0;
    let mut in_sections = false;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        // The multi-line description comes before the first section: no tables in it.
        in_sections |= trimmed.starts_with('[');
        if in_sections && !trimmed.starts_with('#') {
            if trimmed.starts_with('[') && line.ends_with('\n') {
                let next = offset + line.len();
                openings.push((next, index + 2, format!("{UNKNOWN} = 1\n")));
            }
            for (at, _) in line.match_indices('{') {
                openings.push((offset + at + 1, index + 1, format!(" {UNKNOWN} = 1,")));
            }
        }
        offset += line.len();
    }
    openings
}

// ---------------------------------------------------------------------------------------------
// The properties.

fn config() -> ProptestConfig {
    ProptestConfig {
        // Each parse expands a grid of up to a few hundred runs.
        cases: 128,
        // Failures become plain regression tests below; no files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_experiment_files_are_refused_or_parsed(
        (path, text) in seed(),
        edits in damage(),
    ) {
        let mut text = text;
        for edit in &edits {
            edit.apply(&mut text);
        }
        parse_checked(&path, &text)?;
    }

    #[test]
    fn experiment_files_with_one_value_changed_are_refused_or_parsed(
        (path, text) in seed(),
        at in any::<Index>(),
        value in value(),
    ) {
        // One change at a time reaches the checks behind the first failing one, which several
        // changes at once rarely get past.
        let mut text = text;
        Edit::ReplaceValue(at, value).apply(&mut text);
        parse_checked(&path, &text)?;
    }

    #[test]
    fn an_unknown_key_in_any_table_is_refused_at_its_line(
        (path, text) in seed(),
        at in any::<Index>(),
    ) {
        // A misspelt option must not be ignored, and the error must point at it, wherever it
        // is: a section, an inline table in a list (a norm of a grid axis), an extra block.
        let openings = table_openings(&text);
        prop_assume!(!openings.is_empty());
        let (offset, line, key) = &openings[at.index(openings.len())];
        let mut text = text;
        text.insert_str(*offset, key);
        let err = Experiment::parse(&path, text.clone());
        let Err(ConfigError::Field { line: found, field, .. }) = &err else {
            return Err(TestCaseError::fail(format!("expected a field error, got {err:?}\n{text}")));
        };
        prop_assert!(
            field.ends_with(UNKNOWN) && found == line,
            "expected `...{UNKNOWN}` on line {line}: {}\n{text}",
            err.as_ref().unwrap_err()
        );
    }

    #[test]
    fn arbitrary_text_is_refused_or_parsed(text in any::<String>()) {
        parse_checked(Path::new("experiments/arbitrary.toml"), &text)?;
    }

    #[test]
    fn arbitrary_bytes_as_utf8_are_refused_or_parsed(bytes in vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        parse_checked(Path::new("experiments/bytes.toml"), &text)?;
    }

    #[test]
    fn arbitrary_lines_are_refused_or_parsed(lines in vec(line(), 0..24)) {
        // Sections and fields of the schema in any order and with values of any type: text that
        // gets past the TOML parser far more often than arbitrary text does.
        parse_checked(Path::new("experiments/lines.toml"), &lines.join("\n"))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Plain tests.

#[test]
fn the_committed_experiment_files_parse() {
    // The seeds of the properties above: they must be valid to begin with.
    for (path, text) in SEEDS.iter() {
        if let Err(err) = Experiment::parse(path, text.clone()) {
            panic!("{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs that the properties found to be mishandled, shrunk.

/// A grid over norms written one a line, as `experiments/recurrent.toml` has it.
const NORMS_A_LINE: &str = r#"[data]
set = "digits"

[model]
kind = "mlp"
hidden = [16]
norm = [
    "none",
    { kind = "batch", gamma_init = 0.1 },
]

[train]
batch_size = 4
lr = 0.1
samples = 100
"#;

/// The field and line of the error `text` gives, which must be a field error.
fn field_error(text: &str) -> (String, usize) {
    match Experiment::parse(Path::new("experiments/test.toml"), text.to_string()) {
        Err(ConfigError::Field { field, line, .. }) => (field, line),
        other => panic!("expected a field error: {other:?}"),
    }
}

#[test]
fn an_unknown_option_of_a_norm_in_a_grid_is_reported_at_its_line() {
    // Was `model.zz_unknown` at line 4, `[model]`: serde's path inside the norm (an internally
    // tagged enum in the model, another) ends at the model.
    let text = NORMS_A_LINE.replace("{ kind = \"batch\"", "{ zz_unknown = 1, kind = \"batch\"");
    assert_eq!(field_error(&text), ("model.norm.zz_unknown".into(), 9));
}

#[test]
fn an_unknown_option_of_a_norm_in_an_extra_block_is_reported_at_its_line() {
    // The same inside an `[[extra]]` block: was `model.zz_unknown` at line 4.
    let text = format!(
        "{NORMS_A_LINE}\n[[extra]]\nmodel.norm = [{{ kind = \"group\", zz_unknown = 1 }}]\n"
    );
    assert_eq!(
        field_error(&text),
        ("extra.model.norm.zz_unknown".into(), 18)
    );
}

#[test]
fn a_fault_in_one_of_two_norms_of_a_kind_is_reported_at_that_one() {
    // Found by the unknown-key property: placed by its kind, the fault was put at the first
    // batch norm of the list. It is placed by the item of the list the failing run takes.
    let two = NORMS_A_LINE.replace(
        "    { kind = \"batch\", gamma_init = 0.1 },\n",
        "    { kind = \"batch\", gamma_init = 0.1 },\n    { kind = \"batch\", momentum = \"x\" },\n",
    );
    let (field, line) = field_error(&two);
    assert_eq!((field.as_str(), line), ("model.norm.momentum", 10));
    // An unknown kind, and an unknown bare name, at their items.
    let text = NORMS_A_LINE.replace("\"none\",", "\"none\",\n    \"bn\",");
    assert_eq!(field_error(&text), ("model.norm".into(), 9));
    let text = NORMS_A_LINE.replace("kind = \"batch\"", "kind = \"bn\"");
    assert_eq!(field_error(&text), ("model.norm.kind".into(), 9));
    // An option the norm's own check refuses, at its item too.
    let text = NORMS_A_LINE.replace("gamma_init = 0.1", "momentum = 1.5");
    assert_eq!(field_error(&text), ("model.norm".into(), 9));
    // The model's own kind and options, and a data set's files, followed the same way.
    let text = NORMS_A_LINE.replace("hidden = [16]", "hidden = [16]\nwidths = [8]");
    assert_eq!(field_error(&text), ("model.widths".into(), 7));
    let text = NORMS_A_LINE.replace("kind = \"mlp\"", "kind = \"rnn\"");
    assert_eq!(field_error(&text), ("model.kind".into(), 5));
    let files = NORMS_A_LINE.replace(
        "set = \"digits\"",
        "set = \"files\"\n[data.files]\nformat = \"csv\"\ntrain = \"t.csv\"\nlabel = 3",
    );
    assert_eq!(field_error(&files), ("data.files.label".into(), 6));
    let files = files.replace("label = 3", "label = \"y\"\nshape = [1, 2]");
    assert_eq!(field_error(&files), ("data.files.shape".into(), 7));
    // A field missing stays at its table.
    let files = files
        .replace("train = \"t.csv\"\n", "")
        .replace("[1, 2]", "[1, 2, 3]");
    assert_eq!(field_error(&files), ("data.files".into(), 3));
}

#[test]
fn a_grid_of_more_runs_than_the_limit_is_refused_at_its_longest_axis() {
    let seeds: Vec<String> = (0..1000).map(|s| s.to_string()).collect();
    let rates: Vec<String> = (1..=200).map(|k| format!("{}.0", k)).collect();
    let text = format!(
        "[data]\nset = \"digits\"\n[model]\nkind = \"mlp\"\nhidden = [8]\n[train]\n\
         batch_size = [1, 2, 4, 8, 16, 32, 64]\nlr = [{}]\nsamples = 10\nseed = [{}]\n",
        rates.join(", "),
        seeds.join(", ")
    );
    let error = Experiment::parse(Path::new("huge.toml"), text)
        .expect_err("a grid of 1.4 million runs")
        .to_string();
    assert!(
        error.starts_with("huge.toml:10: field `train.seed`: the axes (7 x 200 x 1000 values)"),
        "{error}"
    );
    assert!(error.contains("1400000 runs; at most 100000"), "{error}");
}
