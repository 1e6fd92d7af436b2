//! `man/` holds the pages generated from the clap definitions by the
//! (hidden) `sipseal man` command; this fails when they are stale.
//! `UPDATE_GOLDEN=1 cargo test --test man` rewrites them.

mod common;

#[test]
fn man_pages_are_current() {
    let dir = common::repo().join("man");
    let fresh = tempfile::tempdir().unwrap();
    common::sipseal()
        .args(["man", "--out"])
        .arg(fresh.path())
        .assert()
        .success();
    let read = |d: &std::path::Path| {
        let mut pages: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        pages.sort();
        pages
    };
    let pages = read(fresh.path());
    assert!(pages.iter().any(|(n, _)| n == "sipseal.1"));
    assert!(pages.iter().any(|(n, _)| n == "sipseal-build-response.1"));
    assert!(
        !pages.iter().any(|(n, _)| n == "sipseal-man.1"),
        "the man command is hidden"
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        common::sipseal()
            .args(["man", "--out"])
            .arg(&dir)
            .assert()
            .success();
        return;
    }
    let on_disk = read(&dir);
    let stale: Vec<&String> = pages
        .iter()
        .filter(|p| !on_disk.contains(p))
        .map(|(n, _)| n)
        .collect();
    let extra: Vec<&String> = on_disk
        .iter()
        .filter(|(n, _)| !pages.iter().any(|(p, _)| p == n))
        .map(|(n, _)| n)
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "man/ is stale (changed: {stale:?}, extra: {extra:?}); run UPDATE_GOLDEN=1 cargo test --test man"
    );
    let main = &pages.iter().find(|(n, _)| n == "sipseal.1").unwrap().1;
    let main = String::from_utf8_lossy(main);
    assert!(main.contains("EXIT STATUS") && main.contains("not a recipient"));
    assert!(!main.contains("sipseal-man"), "the man command is hidden");
}
