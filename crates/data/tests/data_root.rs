//! Where the data is found when the binary runs outside the checkout it was built from.

mod common;

use std::fs;

use normlab_data::find_data_root;
use normlab_testkit::scratch;

#[test]
fn the_data_folder_is_found_beside_or_above_the_experiment_or_the_working_directory() {
    let checkout = scratch("data-root");
    let experiments = checkout.path().join("experiments/nested");
    fs::create_dir_all(&experiments).unwrap();
    let elsewhere = scratch("data-root-elsewhere");
    assert_eq!(
        find_data_root([experiments.as_path()]),
        None,
        "no data/ yet"
    );

    fs::create_dir_all(checkout.path().join("data/fetched")).unwrap();
    let data = checkout.path().join("data");
    assert_eq!(find_data_root([experiments.as_path()]), Some(data.clone()));
    // The experiment's folder comes first, then the working directory.
    assert_eq!(
        find_data_root([elsewhere.path(), experiments.as_path()]),
        Some(data.clone())
    );
    fs::create_dir_all(elsewhere.path().join("data/embedded")).unwrap();
    assert_eq!(
        find_data_root([experiments.as_path(), elsewhere.path()]),
        Some(data)
    );
    // A folder called data without either set folder is someone else's.
    let other = scratch("data-root-other");
    fs::create_dir_all(other.path().join("data/images")).unwrap();
    assert_eq!(find_data_root([other.path()]), None);
}
