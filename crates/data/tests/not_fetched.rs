//! Points `NORMLAB_DATA` at an empty folder. This binary holds a single test because it
//! changes the process environment.

mod common;

use std::env;
use std::fs;

use common::TempDir;
use normlab_data::{
    DataError, Split, data_root, digits, fashion_mnist, japanese_vowels, mnist, shakespeare_full,
};

#[test]
fn missing_sets_name_the_fetch_command() {
    let default_root = data_root();
    assert!(default_root.ends_with("data"), "{}", default_root.display());
    assert!(default_root.join("embedded/digits.csv.gz").is_file());

    let dir = TempDir::new("not-fetched");
    // SAFETY: this is the only test in this binary, so no other thread reads the environment.
    unsafe { env::set_var("NORMLAB_DATA", dir.path()) };
    assert_eq!(data_root(), dir.path());

    let results = [
        ("mnist", mnist(Split::Train).err()),
        ("fashion-mnist", fashion_mnist(Split::Test).err()),
        ("japanese-vowels", japanese_vowels(Split::Train).err()),
        ("shakespeare", shakespeare_full().err()),
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
        mnist(Split::Train),
        Err(DataError::NotFetched { .. })
    ));

    // Embedded sets move with the root too.
    assert!(matches!(digits(), Err(DataError::Io { .. })));
    // SAFETY: as above.
    unsafe { env::remove_var("NORMLAB_DATA") };
    assert_eq!(data_root(), default_root);
}
