//! Property tests of the file readers (CSV tables, scikit-learn digits, IDX, `.ts`, plain
//! text): whatever a file holds, a reader returns. Arbitrary bytes, gzipped arbitrary bytes,
//! and valid files cut short or with a few bytes flipped, replaced, inserted or deleted (raw,
//! gzipped, or gzipped and then damaged) give `Ok` with consistent content, or an error that
//! names the file, and for an error about a line of a text format, a line the file has. No
//! reader panics, and none asks for a single allocation larger than a small multiple of what it
//! reads: a header or a label that claims billions of anything is refused before it is believed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::PathBuf;

use common::{gzip, idx_bytes};
use flate2::read::MultiGzDecoder;
use normlab_data::{
    DataError, Images, MAX_CLASSES, Sequences, digits_from, images_from_csv, images_from_idx,
    read_idx, read_text_file, read_ts,
};
use normlab_testkit::{Scratch, scratch};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// The largest allocation a reader asks for.

/// Records, per thread, the largest single allocation requested, so that a reader can be
/// measured while the test harness runs other cases on other threads.
struct PeakAllocator;

thread_local! {
    /// Largest request since the last reset on this thread. `const` init and no destructor: the
    /// allocator may touch it without allocating, at any point of the thread's life.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Whether a reader is being measured on this thread.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// A request this large while a reader runs is the bug the bound is there to find: stop at once
/// with a message rather than let the machine swap or the allocator abort without one.
const ABORT_ABOVE: usize = 1 << 30;

fn note_request(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
    if size > ABORT_ABOVE && MEASURING.try_with(Cell::get).unwrap_or(false) {
        // An allocator must not unwind; stderr is unbuffered and writing it does not allocate.
        let _ = std::io::stderr().write_all(b"a reader asked for an allocation over 1 GiB\n");
        std::process::abort();
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_request(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_request(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_request(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakAllocator = PeakAllocator;

/// `f`'s result and the largest single allocation it requested on this thread.
fn largest_allocation_in<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    MEASURING.with(|measuring| measuring.set(true));
    let result = f();
    MEASURING.with(|measuring| measuring.set(false));
    (result, LARGEST.with(Cell::get))
}

/// Bytes a reader may ask for at once per byte it reads: its containers hold a few words per
/// value and grow by doubling, and a value can be as short as one byte and a separator.
const ALLOWED_PER_BYTE: usize = 64;
/// Plus fixed buffers (the CSV reader's, error messages).
const ALLOWED_BASE: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Test files and the checks every read must pass.

/// Whatever a reader gets from a file: decompressed as far as it goes if it is gzip (as the
/// readers detect it, by the magic bytes), the bytes themselves otherwise.
fn content(file: &[u8]) -> Vec<u8> {
    if !file.starts_with(&[0x1f, 0x8b]) {
        return file.to_vec();
    }
    let mut out = Vec::new();
    // The files are a few KB and deflate expands at most about 1000 times: a few MB. The cap
    // only keeps a mistake in a generator from filling memory here.
    let _ = MultiGzDecoder::new(file)
        .take(64 << 20)
        .read_to_end(&mut out);
    out
}

/// Lines of a text as the readers number them: `\n` ends a line, and a last line without one
/// still counts.
fn line_count(content: &[u8]) -> usize {
    content.iter().filter(|&&b| b == b'\n').count() + 1
}

/// One file of one test case, in its own temporary folder (removed with it).
struct TestFile {
    _dir: Scratch,
    path: PathBuf,
    /// The bytes on disk.
    file: Vec<u8>,
    /// What the reader gets from them, see [`content`].
    content: Vec<u8>,
}

impl TestFile {
    fn new(name: &str, file: Vec<u8>) -> Self {
        let dir = scratch("readers-properties");
        let path = dir.write(name, &file);
        Self {
            content: content(&file),
            _dir: dir,
            path,
            file,
        }
    }

    /// The larger of the file and its content: what a reader's allocations may scale with.
    fn size(&self) -> usize {
        self.file.len().max(self.content.len())
    }
}

/// Runs `read` and checks what every reader promises whatever `bad` (one of the files it reads)
/// holds: its largest allocation is within the bound for `input_size` bytes read in all, and an
/// error names `bad` and, if it is about a line, gives one that `bad` has.
fn read_checked<T>(
    bad: &TestFile,
    input_size: usize,
    read: impl FnOnce() -> Result<T, DataError>,
) -> Result<Result<T, DataError>, TestCaseError> {
    let (result, largest) = largest_allocation_in(read);
    let bound = ALLOWED_PER_BYTE * input_size + ALLOWED_BASE;
    prop_assert!(
        largest <= bound,
        "largest single allocation {largest} bytes, over {bound} for {input_size} bytes of input"
    );
    if let Err(err) = &result {
        let message = err.to_string();
        let path = bad.path.display().to_string();
        prop_assert!(
            message.contains(&path),
            "message does not name {path}: {message}"
        );
        prop_assert!(
            !matches!(
                err,
                DataError::Io { .. }
                    | DataError::NotFetched { .. }
                    | DataError::InvalidArgument { .. }
            ),
            "the file is there and the arguments are valid: {err:?}"
        );
        if let DataError::BadLine { line, .. } = err {
            let lines = line_count(&bad.content);
            prop_assert!(
                (1..=lines).contains(line),
                "line {line} of a text of {lines} lines: {message}"
            );
            prop_assert!(
                message.starts_with(&format!("{path}:{line}: ")),
                "{message}"
            );
        }
    }
    Ok(result)
}

/// What any `Images` a reader returns must hold to be usable.
fn check_images(images: &Images) -> Result<(), TestCaseError> {
    prop_assert!(!images.is_empty());
    prop_assert_eq!(images.pixels.len(), images.len() * images.example_len());
    prop_assert!(images.classes <= MAX_CLASSES);
    prop_assert!(images.labels.iter().all(|&l| l < images.classes));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Damaging files.

/// One change to a file's bytes. Positions are shares of the current length, so that an edit
/// shrinks along with the file.
#[derive(Debug, Clone)]
enum Edit {
    /// Cut the file here: a download or copy that stopped early.
    Truncate(Index),
    FlipBit(Index, u8),
    Replace(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Overwrite four bytes with a big-endian word: an IDX header that claims other dims.
    Word(Index, u32),
    /// Replace the token around a position (the bytes between two separators) with one that
    /// readers must refuse or handle: huge or negative numbers, NaN, quotes, separators.
    Token(Index, &'static str),
}

/// Cells and headers that have caught parsers out elsewhere.
const TOKENS: &[&str] = &[
    "",
    "0",
    "-1",
    "-0",
    "16",
    "17",
    "99999",
    "100000",
    "4000000000",
    "18446744073709551616",
    "1e39",
    "-1e39",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "?",
    "\"",
    "\"\"",
    "\"a\nb\"",
    "a,b",
    ":",
    "@data",
    "@classLabel true",
    "@dimensions 4000000000",
    "label",
    "\u{feff}",
    "\0",
    "\r",
    "\n\n",
    "é",
];

/// Bytes that end a token for [`Edit::Token`]: separators of CSV and `.ts`, and line ends.
fn is_separator(b: u8) -> bool {
    matches!(b, b',' | b':' | b'\n' | b'\r' | b' ' | b'\t')
}

impl Edit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Edit::Truncate(at) => bytes.truncate(at.index(len + 1)),
            // Edits of an existing byte have nothing to do on an empty file.
            _ if len == 0 && !matches!(self, Edit::Insert(..) | Edit::Token(..)) => {}
            Edit::FlipBit(at, bit) => bytes[at.index(len)] ^= 1 << (bit % 8),
            Edit::Replace(at, byte) => bytes[at.index(len)] = *byte,
            Edit::Insert(at, new) => {
                let at = at.index(len + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Delete(at, count) => {
                let at = at.index(len);
                bytes.drain(at..(at + count).min(len));
            }
            Edit::Word(at, word) => {
                let at = at.index(len);
                let end = (at + 4).min(len);
                bytes[at..end].copy_from_slice(&word.to_be_bytes()[..end - at]);
            }
            Edit::Token(at, token) => {
                let at = at.index(len + 1);
                let start = bytes[..at]
                    .iter()
                    .rposition(|&b| is_separator(b))
                    .map_or(0, |i| i + 1);
                let end = bytes[at..]
                    .iter()
                    .position(|&b| is_separator(b))
                    .map_or(len, |i| at + i);
                bytes.splice(start..end, token.bytes());
            }
        }
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    let word = prop_oneof![
        select(vec![
            0,
            1,
            2,
            3,
            255,
            256,
            65_536,
            0x7fff_ffff,
            4_000_000_000,
            u32::MAX
        ]),
        any::<u32>(),
    ];
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::Replace(at, byte)),
        (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(at, new)| Edit::Insert(at, new)),
        (any::<Index>(), 1..16usize).prop_map(|(at, count)| Edit::Delete(at, count)),
        (any::<Index>(), word).prop_map(|(at, word)| Edit::Word(at, word)),
        (any::<Index>(), select(TOKENS)).prop_map(|(at, token)| Edit::Token(at, token)),
    ]
}

/// Where the damage happens relative to gzip, which every reader detects by its magic bytes.
#[derive(Debug, Clone, Copy)]
enum Packing {
    /// The damaged file as it is.
    Raw,
    /// The damaged file gzipped: the reader decompresses it and then meets the damage.
    Gzipped,
    /// The valid file gzipped, then damaged: the gzip layer itself is corrupt or cut short.
    DamagedGzip,
}

fn packing() -> impl Strategy<Value = Packing> {
    select(vec![Packing::Raw, Packing::Gzipped, Packing::DamagedGzip])
}

/// Damage: either just a cut at an arbitrary byte, or one to four edits of any kind.
fn damage() -> impl Strategy<Value = Vec<Edit>> {
    prop_oneof![
        any::<Index>().prop_map(|at| vec![Edit::Truncate(at)]),
        vec(edit(), 1..5),
    ]
}

fn damaged(valid: &[u8], edits: &[Edit], packing: Packing) -> Vec<u8> {
    let apply = |mut bytes: Vec<u8>| {
        for edit in edits {
            edit.apply(&mut bytes);
        }
        bytes
    };
    match packing {
        Packing::Raw => apply(valid.to_vec()),
        Packing::Gzipped => gzip(&apply(valid.to_vec())),
        Packing::DamagedGzip => apply(gzip(valid)),
    }
}

/// Arbitrary bytes of a few KB, as they are or gzipped.
fn arbitrary_file() -> impl Strategy<Value = Vec<u8>> {
    (vec(any::<u8>(), 0..4096), any::<bool>())
        .prop_map(|(bytes, zipped)| if zipped { gzip(&bytes) } else { bytes })
}

// ---------------------------------------------------------------------------------------------
// Valid files.

/// A number as a data file would write it: integers, decimals, exponents.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (-300i32..300).prop_map(|v| v.to_string()),
        (-1e3f32..1e3).prop_map(|v| v.to_string()),
        (-1e3f32..1e3).prop_map(|v| format!("{v:e}")),
    ]
}

/// A CSV table with a header, the label in column `label` (anywhere), 1 to 5 feature columns
/// and 1 to 11 rows; sometimes with CRLF line ends or spaces around cells.
fn valid_csv() -> impl Strategy<Value = Vec<u8>> {
    (
        1..6usize,
        0..6usize,
        1..12usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(features, label_at, rows, crlf, spaced)| {
            let row = (0..12usize, vec(number(), features));
            (
                Just(label_at.min(features)),
                vec(row, rows),
                Just(crlf),
                Just(spaced),
            )
        })
        .prop_map(|(label_at, rows, crlf, spaced)| {
            let end = if crlf { "\r\n" } else { "\n" };
            let cell = |text: &str| match spaced {
                true => format!(" {text} "),
                false => text.to_string(),
            };
            let line = |mut cells: Vec<String>, label: String| {
                cells.insert(label_at, label);
                cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",") + end
            };
            let features = rows[0].1.len();
            let names = (0..features).map(|i| format!("pixel{i}")).collect();
            let mut text = line(names, "label".into());
            for (label, values) in rows {
                text += &line(values, label.to_string());
            }
            text.into_bytes()
        })
}

/// Images in scikit-learn's digits layout: 64 pixels in 0..=16 and a label 0..9 a line.
fn valid_digits() -> impl Strategy<Value = Vec<u8>> {
    vec((vec(0..=16u8, 64), 0..10u8), 1..6).prop_map(|rows| {
        let mut text = String::new();
        for (pixels, label) in rows {
            for pixel in pixels {
                let _ = write!(text, "{pixel},");
            }
            let _ = writeln!(text, "{label}");
        }
        text.into_bytes()
    })
}

/// An IDX image file `[N, H, W]` and its label file `[N]` (labels < 10), N from 0.
fn valid_idx_pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (0..5u32, 1..6u32, 1..6u32)
        .prop_flat_map(|(n, h, w)| {
            let pixels = vec(any::<u8>(), (n * h * w) as usize);
            let labels = vec(0..10u8, n as usize);
            (Just([n, h, w]), pixels, labels)
        })
        .prop_map(|(dims, pixels, labels)| {
            let n = dims[0];
            (idx_bytes(&dims, &pixels), idx_bytes(&[n], &labels))
        })
}

/// Class labels of the `.ts` files: a name each, as UEA files use them.
const TS_CLASSES: [&str; 4] = ["1", "low", "speaker_b", "x.y"];

/// A `.ts` classification file: headers (with or without `@dimensions`), then 1 to 7 cases of
/// 1 to 3 dimensions, each case of its own length (1 to 5 steps).
fn valid_ts() -> impl Strategy<Value = Vec<u8>> {
    (1..4usize, 1..=TS_CLASSES.len(), any::<bool>())
        .prop_flat_map(|(dims, classes, declared)| {
            let case = (1..6usize)
                .prop_flat_map(move |steps| (vec(vec(number(), steps), dims), 0..classes));
            (Just(dims), Just(classes), Just(declared), vec(case, 1..8))
        })
        .prop_map(|(dims, classes, declared, cases)| {
            let mut text = String::from("# generated\n@problemName Generated\n");
            let _ = writeln!(text, "@univariate {}", dims == 1);
            if declared {
                let _ = writeln!(text, "@dimensions {dims}");
            }
            let _ = writeln!(text, "@equalLength false");
            let _ = writeln!(text, "@classLabel true {}", TS_CLASSES[..classes].join(" "));
            text += "@data\n";
            for (values, label) in cases {
                let dims: Vec<String> = values.iter().map(|d| d.join(",")).collect();
                let _ = writeln!(text, "{}:{}", dims.join(":"), TS_CLASSES[label]);
            }
            text.into_bytes()
        })
}

/// Any non-empty UTF-8 text, line breaks and all.
fn valid_text() -> impl Strategy<Value = Vec<u8>> {
    "(?s).{1,300}".prop_map(String::into_bytes)
}

// ---------------------------------------------------------------------------------------------
// The readers, each with its checks of what it returns.

fn read_csv(file: &TestFile) -> Result<(), TestCaseError> {
    let read = read_checked(file, file.size(), || {
        images_from_csv(&file.path, "label", None)
    })?;
    if let Ok(images) = read {
        check_images(&images)?;
        prop_assert_eq!([images.shape[0], images.shape[1]], [1, 1]);
    }
    Ok(())
}

fn read_digits(file: &TestFile) -> Result<(), TestCaseError> {
    if let Ok(images) = read_checked(file, file.size(), || digits_from(&file.path))? {
        check_images(&images)?;
        prop_assert_eq!(images.shape, [1, 8, 8]);
        prop_assert!(images.pixels.iter().all(|p| (0.0..=16.0).contains(p)));
    }
    Ok(())
}

fn read_one_idx(file: &TestFile) -> Result<(), TestCaseError> {
    if let Ok(idx) = read_checked(file, file.size(), || read_idx(&file.path))? {
        prop_assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
    }
    Ok(())
}

/// Reads an image file and a label file together; `bad` is the one that may be damaged, and any
/// error must name it.
fn read_idx_pair(
    images: &TestFile,
    labels: &TestFile,
    bad: &TestFile,
) -> Result<(), TestCaseError> {
    let input_size = images.size() + labels.size();
    let read = read_checked(bad, input_size, || {
        images_from_idx(&images.path, &labels.path, 10)
    })?;
    if let Ok(set) = read {
        prop_assert_eq!(set.pixels.len(), set.len() * set.example_len());
        prop_assert!(set.labels.iter().all(|&l| l < 10));
    }
    Ok(())
}

fn check_sequences(seqs: &Sequences) -> Result<(), TestCaseError> {
    prop_assert!(!seqs.is_empty() && seqs.features > 0);
    prop_assert_eq!(seqs.classes, seqs.class_names.len());
    prop_assert_eq!(seqs.labels.len(), seqs.len());
    prop_assert!(seqs.labels.iter().all(|&l| l < seqs.classes));
    for case in &seqs.values {
        prop_assert!(!case.is_empty() && case.len() % seqs.features == 0);
        prop_assert!(case.iter().all(|v| v.is_finite()));
    }
    Ok(())
}

fn read_one_ts(file: &TestFile) -> Result<(), TestCaseError> {
    if let Ok(seqs) = read_checked(file, file.size(), || read_ts(&file.path))? {
        check_sequences(&seqs)?;
    }
    Ok(())
}

fn read_text(file: &TestFile) -> Result<(), TestCaseError> {
    if let Ok(text) = read_checked(file, file.size(), || read_text_file(&file.path))? {
        // Ok only for non-empty UTF-8, and then every character is there.
        let chars = std::str::from_utf8(&file.content).map(|s| s.chars().count());
        prop_assert_eq!(chars, Ok(text.len()));
        prop_assert!(!text.is_empty());
        prop_assert!(text.ids.iter().all(|&id| (id as usize) < text.vocab_size()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties.

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Failures are turned into plain regression tests below; no files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_files_are_valid(
        csv in valid_csv(),
        digits in valid_digits(),
        (images, labels) in valid_idx_pair(),
        ts in valid_ts(),
        text in valid_text(),
    ) {
        // The damage properties start from these: they must be valid to begin with.
        let csv = TestFile::new("table.csv", csv);
        let read = images_from_csv(&csv.path, "label", None);
        prop_assert!(read.is_ok(), "{:?}\n{}", read, String::from_utf8_lossy(&csv.file));
        let digits = TestFile::new("digits.csv", digits);
        prop_assert!(digits_from(&digits.path).is_ok());
        let images = TestFile::new("images-idx3-ubyte", images);
        let labels = TestFile::new("labels-idx1-ubyte", labels);
        // An IDX pair of zero images is valid IDX; only the loaders of a set refuse it later.
        prop_assert!(images_from_idx(&images.path, &labels.path, 10).is_ok());
        let ts = TestFile::new("cases.ts", ts);
        let read = read_ts(&ts.path);
        prop_assert!(read.is_ok(), "{:?}\n{}", read, String::from_utf8_lossy(&ts.file));
        let text = TestFile::new("text.txt", text);
        prop_assert!(read_text_file(&text.path).is_ok());
    }

    #[test]
    fn csv_tables_of_arbitrary_bytes_are_refused_or_read(file in arbitrary_file()) {
        read_csv(&TestFile::new("table.csv", file))?;
    }

    #[test]
    fn damaged_csv_tables_are_refused_or_read(
        valid in valid_csv(),
        edits in damage(),
        packing in packing(),
    ) {
        read_csv(&TestFile::new("table.csv", damaged(&valid, &edits, packing)))?;
    }

    #[test]
    fn csv_tables_with_any_example_shape_are_refused_or_read(
        valid in valid_csv(),
        shape in [
            prop_oneof![0..8usize, any::<usize>()],
            prop_oneof![0..8usize, any::<usize>()],
            prop_oneof![0..8usize, any::<usize>()],
        ],
    ) {
        // The shape comes from the experiment file, next to the table's name: as untrusted as
        // the table itself.
        let file = TestFile::new("table.csv", valid);
        let read = read_checked(&file, file.size(), || {
            images_from_csv(&file.path, "label", Some(shape))
        })?;
        if let Ok(images) = read {
            check_images(&images)?;
            prop_assert_eq!(images.shape, shape);
        }
    }

    #[test]
    fn digits_of_arbitrary_bytes_are_refused_or_read(file in arbitrary_file()) {
        read_digits(&TestFile::new("digits.csv", file))?;
    }

    #[test]
    fn damaged_digits_are_refused_or_read(
        valid in valid_digits(),
        edits in damage(),
        packing in packing(),
    ) {
        read_digits(&TestFile::new("digits.csv", damaged(&valid, &edits, packing)))?;
    }

    #[test]
    fn idx_of_arbitrary_bytes_is_refused_or_read(file in arbitrary_file()) {
        read_one_idx(&TestFile::new("data-idx3-ubyte", file))?;
    }

    #[test]
    fn idx_of_arbitrary_bytes_after_a_valid_header_is_refused_or_read(
        // Small dims, which a payload may match, and any, whose product may overflow.
        dims in vec(prop_oneof![0..6u32, any::<u32>()], 0..5),
        payload in vec(any::<u8>(), 0..2048),
    ) {
        // Arbitrary bytes rarely start `00 00 08`: this reaches the dims and the payload check.
        read_one_idx(&TestFile::new("data-idx3-ubyte", idx_bytes(&dims, &payload)))?;
    }

    #[test]
    fn damaged_idx_pairs_are_refused_or_read(
        (images, labels) in valid_idx_pair(),
        damage_labels in any::<bool>(),
        edits in damage(),
        packing in packing(),
    ) {
        let (images, labels) = match damage_labels {
            false => (damaged(&images, &edits, packing), labels),
            true => (images, damaged(&labels, &edits, packing)),
        };
        let images = TestFile::new("images-idx3-ubyte", images);
        let labels = TestFile::new("labels-idx1-ubyte", labels);
        let bad = if damage_labels { &labels } else { &images };
        read_one_idx(bad)?;
        read_idx_pair(&images, &labels, bad)?;
    }

    #[test]
    fn ts_of_arbitrary_bytes_is_refused_or_read(file in arbitrary_file()) {
        read_one_ts(&TestFile::new("cases.ts", file))?;
    }

    #[test]
    fn damaged_ts_is_refused_or_read(
        valid in valid_ts(),
        edits in damage(),
        packing in packing(),
    ) {
        read_one_ts(&TestFile::new("cases.ts", damaged(&valid, &edits, packing)))?;
    }

    #[test]
    fn text_of_arbitrary_bytes_is_refused_or_read(file in arbitrary_file()) {
        read_text(&TestFile::new("text.txt", file))?;
    }

    #[test]
    fn damaged_text_is_refused_or_read(
        valid in valid_text(),
        edits in damage(),
        packing in packing(),
    ) {
        read_text(&TestFile::new("text.txt", damaged(&valid, &edits, packing)))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Plain tests of the inputs the bound is about, so that they run whatever proptest generates.

/// Runs a check that returns proptest's error outside proptest.
fn must(check: Result<(), TestCaseError>) {
    if let Err(err) = check {
        panic!("{err}");
    }
}

fn expect_err<T: std::fmt::Debug>(check: Result<Result<T, DataError>, TestCaseError>) -> String {
    match check {
        Ok(Err(err)) => err.to_string(),
        other => panic!("expected the reader to refuse the file: {other:?}"),
    }
}

#[test]
fn idx_dims_claiming_billions_of_bytes_are_refused_without_allocating_them() {
    let file = TestFile::new(
        "huge-idx3-ubyte",
        idx_bytes(&[4_000_000_000, 4_000_000_000, 28], &[1, 2, 3]),
    );
    let message = expect_err(read_checked(&file, file.size(), || read_idx(&file.path)));
    assert!(message.contains("need"), "{message}");
}

#[test]
fn a_csv_label_of_four_billion_is_refused_without_allocating_for_it() {
    let file = TestFile::new("table.csv", b"label,x\n0,1\n4000000000,2\n".to_vec());
    let message = expect_err(read_checked(&file, file.size(), || {
        images_from_csv(&file.path, "label", None)
    }));
    assert!(message.contains(":3: label 4000000000"), "{message}");
}

#[test]
fn ts_dimensions_claiming_billions_are_refused_on_the_first_case() {
    let text = "@classLabel true a\n@dimensions 4000000000\n@data\n1,2:3,4:a\n";
    let file = TestFile::new("cases.ts", text.as_bytes().to_vec());
    let message = expect_err(read_checked(&file, file.size(), || read_ts(&file.path)));
    assert!(
        message.contains(":4: 2 dimensions, expected 4000000000"),
        "{message}"
    );
}

#[test]
fn gzip_cut_short_is_refused_with_the_file_name() {
    let valid = gzip(b"label,x\n0,1\n");
    let file = TestFile::new("table.csv.gz", valid[..valid.len() - 5].to_vec());
    must(read_csv(&file));
    let message = expect_err(read_checked(&file, file.size(), || {
        images_from_csv(&file.path, "label", None)
    }));
    assert!(message.contains("gzip"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs that the properties found to break a reader, shrunk.

#[test]
fn a_csv_shape_whose_product_wraps_around_is_refused() {
    // 2635249153387078803 * 7 = 2^64 + 5: the unchecked product panicked in debug builds, and in
    // release builds wrapped to 5 and accepted this shape for a table of 5 feature columns.
    let file = TestFile::new("table.csv", b"label,a,b,c,d,e\n0,1,2,3,4,5\n".to_vec());
    let message = expect_err(read_checked(&file, file.size(), || {
        images_from_csv(&file.path, "label", Some([1, 2_635_249_153_387_078_803, 7]))
    }));
    assert!(
        message.contains("holds more values than memory can address"),
        "{message}"
    );
}
