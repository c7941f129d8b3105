mod common;

use common::{assert_message, gzip};
use normlab_data::{DataRoot, Text, read_text_dir};
use normlab_testkit::scratch;

#[test]
fn embedded_shakespeare_loads() {
    let text = DataRoot::default().embedded_shakespeare().unwrap();
    // Eight plays of 1 036 467 bytes of ASCII, joined by seven blank-line separators.
    assert_eq!(text.len(), 1_036_467 + 7 * 2);
    assert_eq!(text.vocab_size(), 76);
    let expected: String =
        "\n !\"&'(),-./12345:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz{}".into();
    assert_eq!(text.vocab.iter().collect::<String>(), expected);

    // Sorted file order puts Hamlet first and The Tempest last.
    let decode = |ids: &[u32]| {
        ids.iter()
            .map(|&id| text.vocab[id as usize])
            .collect::<String>()
    };
    assert_eq!(decode(&text.ids[..25]), "HAMLET, PRINCE OF DENMARK");
    assert!(decode(&text.ids[text.len() - 32..]).ends_with("Let your indulgence set me free."));
    // Hamlet's last line and Julius Caesar's title stay apart.
    let all = decode(&text.ids);
    assert!(
        all.contains("shot off.]\n\nJULIUS CAESAR"),
        "plays are not separated"
    );
}

#[test]
fn ids_index_a_sorted_vocabulary() {
    let text = Text::new("hello, world");
    assert_eq!(text.vocab, [' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
    assert_eq!(text.ids, [4, 3, 5, 5, 6, 1, 0, 8, 6, 7, 5, 2]);
    assert_eq!(text.vocab_size(), 9);

    let empty = Text::new("");
    assert!(empty.is_empty());
    assert_eq!(empty.vocab_size(), 0);
}

#[test]
fn windows_pair_inputs_with_next_characters() {
    let text = Text::new("abcdefghijk"); // ids 0..=10
    let (input, target) = text.window(2, 4).unwrap();
    assert_eq!(input, [2, 3, 4, 5]);
    assert_eq!(target, [3, 4, 5, 6]);
    // The target of the last window needs one character past the input.
    assert!(text.window(6, 4).is_some());
    assert!(text.window(7, 4).is_none());
    assert!(text.window(usize::MAX, 4).is_none());

    let windows: Vec<_> = text.windows(5).collect();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0], (&[0, 1, 2, 3, 4][..], &[1, 2, 3, 4, 5][..]));
    assert_eq!(windows[1], (&[5, 6, 7, 8, 9][..], &[6, 7, 8, 9, 10][..]));
    assert_eq!(text.windows(10).count(), 1);
    assert_eq!(text.windows(11).count(), 0);
    assert_eq!(text.windows(0).count(), 0);
}

#[test]
fn text_dir_joins_txt_files_in_name_order() {
    let dir = scratch("text-dir");
    dir.write("b.txt", "second");
    dir.write("a.txt", gzip(b"first"));
    dir.write("notes.md", "ignored");
    let text = read_text_dir(dir.path()).unwrap();
    let decoded: String = text.ids.iter().map(|&id| text.vocab[id as usize]).collect();
    assert_eq!(decoded, "first\n\nsecond");
}

#[test]
fn text_dir_errors_name_the_problem() {
    let dir = scratch("text-bad");
    let err = read_text_dir(dir.path()).unwrap_err();
    assert_message(&err, dir.path(), &["no .txt files"]);

    let bad = dir.write("latin1.txt", [b'a', 0xe9, b'b']);
    let err = read_text_dir(dir.path()).unwrap_err();
    assert_message(&err, &bad, &["not UTF-8", "offset 1"]);

    let missing = dir.path().join("missing");
    assert_message(
        &read_text_dir(&missing).unwrap_err(),
        &missing,
        &["cannot read"],
    );
}
