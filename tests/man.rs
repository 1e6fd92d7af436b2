//! `man/` holds the pages generated from the clap definitions; this fails
//! when they are stale. `UPDATE_GOLDEN=1 cargo test --test man` rewrites them.

mod common;

#[test]
fn man_pages_are_current() {
    let dir = common::repo().join("man");
    let pages = sipseal::cli::man::pages().unwrap();
    assert!(pages.iter().any(|(n, _)| n == "sipseal.1"));
    assert!(pages.iter().any(|(n, _)| n == "sipseal-build-response.1"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for (name, bytes) in &pages {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (name, bytes) in &pages {
        if std::fs::read(dir.join(name)).ok().as_ref() != Some(bytes) {
            stale.push(name.clone());
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.retain(|n| !pages.iter().any(|(p, _)| p == n));
    assert!(
        stale.is_empty() && on_disk.is_empty(),
        "man/ is stale (changed: {stale:?}, extra: {on_disk:?}); run UPDATE_GOLDEN=1 cargo test --test man"
    );
    let main = String::from_utf8(pages[0].1.clone()).unwrap();
    assert!(main.contains("EXIT STATUS") && main.contains("not a recipient"));
}
