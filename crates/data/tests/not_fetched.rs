//! A data root without the fetched sets, and `$NORMLAB_DATA` choosing the root. This binary
//! holds a single test because it changes the process environment.

mod common;

use std::env;
use std::fs;

use normlab_data::{DataError, DataRoot, Split};
use normlab_testkit::scratch;

#[test]
fn missing_sets_name_the_fetch_command() {
    let default_root = DataRoot::default();
    assert!(default_root.path().ends_with("data"), "{default_root:?}");
    assert!(default_root.path().join("embedded/digits.csv.gz").is_file());

    let dir = scratch("not-fetched");
    let root = DataRoot::at(dir.path());
    let results = [
        ("mnist", root.mnist(Split::Train).err()),
        ("fashion-mnist", root.fashion_mnist(Split::Test).err()),
        ("japanese-vowels", root.japanese_vowels(Split::Train).err()),
        ("shakespeare", root.shakespeare_full().err()),
    ];
    for (set, err) in results {
        let err = err.unwrap_or_else(|| panic!("{set} loaded from an empty folder"));
        let DataError::NotFetched {
            set: named,
            ref path,
            ref command,
        } = err
        else {
            panic!("{set}: expected NotFetched, got {err:?}");
        };
        assert_eq!(named, set);
        assert_eq!(*path, dir.path().join("fetched").join(set));
        assert_eq!(*command, format!("scripts/fetch-data.sh {set}"));
        assert!(
            err.to_string()
                .contains(&format!("run `scripts/fetch-data.sh {set}`")),
            "{err}"
        );
    }

    // Files without the marker the script writes last are an unfinished fetch.
    let partial = dir.path().join("fetched/mnist");
    fs::create_dir_all(&partial).unwrap();
    fs::write(
        partial.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 0],
    )
    .unwrap();
    assert!(matches!(
        root.mnist(Split::Train),
        Err(DataError::NotFetched { .. })
    ));
    // Embedded sets move with the root too.
    assert!(matches!(root.digits(), Err(DataError::Io { .. })));

    // `$NORMLAB_DATA` wins over any folder the root is looked for in.
    // SAFETY: this is the only test in this binary, so no other thread reads the environment.
    unsafe { env::set_var("NORMLAB_DATA", dir.path()) };
    assert_eq!(DataRoot::locate([default_root.path()]), root);
    // SAFETY: as above.
    unsafe { env::remove_var("NORMLAB_DATA") };
    assert_eq!(DataRoot::default(), default_root);
}
