//! load_reviews on tiny archives and folders built here, in the official aclImdb layout.

use std::fs;
use std::path::{Path, PathBuf};

use imdb_lstm::data::{load_reviews, RawDataset};

/// (relative path, contents) of a tiny dataset; `extras` adds the files a loader must ignore.
fn files(extras: bool) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("aclImdb/train/pos/10_9.txt".into(), b"ten good".to_vec()),
        ("aclImdb/train/pos/2_7.txt".into(), b"two fine".to_vec()),
        ("aclImdb/train/pos/0_10.txt".into(), b"zero great".to_vec()),
        ("aclImdb/train/neg/1_1.txt".into(), b"one awful".to_vec()),
        ("aclImdb/train/neg/0_4.txt".into(), b"caf\xe9 meh".to_vec()), // Latin-1 byte
        ("aclImdb/test/pos/5_8.txt".into(), b"five nice".to_vec()),
        ("aclImdb/test/neg/3_2.txt".into(), b"three bad".to_vec()),
        ("aclImdb/test/neg/20_3.txt".into(), b"twenty poor".to_vec()),
        ("aclImdb/README".into(), b"readme".to_vec()),
        ("aclImdb/imdb.vocab".into(), b"the\nand\n".to_vec()),
    ];
    if extras {
        for (p, c) in [
            ("aclImdb/train/unsup/0_0.txt", "unlabelled"),
            ("aclImdb/train/unsup/1_0.txt", "unlabelled"),
            ("aclImdb/train/labeledBow.feat", "9 0:1"),
            ("aclImdb/train/unsupBow.feat", "0 0:1"),
            ("aclImdb/test/labeledBow.feat", "9 0:1"),
            ("aclImdb/train/urls_pos.txt", "http://x"),
            ("aclImdb/train/urls_neg.txt", "http://x"),
            ("aclImdb/train/urls_unsup.txt", "http://x"),
            ("aclImdb/test/urls_pos.txt", "http://x"),
            ("aclImdb/imdbEr.txt", "0.1"),
        ] {
            v.push((p.into(), c.as_bytes().to_vec()));
        }
    }
    v
}

fn write_folder(root: &Path, files: &[(String, Vec<u8>)]) {
    for (p, c) in files {
        let path = root.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, c).unwrap();
    }
}

fn tar_gz_bytes(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(enc);
    for (p, c) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(c.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, c.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn write_archive(dir: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    let p = dir.join("aclImdb_v1.tar.gz");
    fs::write(&p, tar_gz_bytes(files)).unwrap();
    p
}

fn check(d: &RawDataset) {
    let key = |rs: &[imdb_lstm::data::Review]| -> Vec<(u8, u32, u8)> {
        rs.iter().map(|r| (r.label, r.id, r.rating)).collect()
    };
    // Sorted by (label, numeric id): neg (0) first, 2 before 10.
    assert_eq!(
        key(&d.train),
        [(0, 0, 4), (0, 1, 1), (1, 0, 10), (1, 2, 7), (1, 10, 9)]
    );
    assert_eq!(key(&d.test), [(0, 3, 2), (0, 20, 3), (1, 5, 8)]);
    assert_eq!(d.train[0].text, "caf\u{fffd} meh");
    assert_eq!(d.train[4].text, "ten good");
    assert_eq!(d.test[2].text, "five nice");
}

#[test]
fn archive_with_and_without_extras() {
    for extras in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let p = write_archive(dir.path(), &files(extras));
        check(&load_reviews(&p).unwrap());
    }
}

#[test]
fn folder_with_and_without_extras() {
    for extras in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), &files(extras));
        // Both the folder holding aclImdb and aclImdb itself.
        check(&load_reviews(dir.path()).unwrap());
        check(&load_reviews(&dir.path().join("aclImdb")).unwrap());
    }
}

#[test]
fn hidden_files_are_ignored_in_review_folders() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = files(false);
    f.push(("aclImdb/train/pos/.DS_Store".into(), b"x".to_vec()));
    write_folder(dir.path(), &f);
    check(&load_reviews(dir.path()).unwrap());
}

fn err(p: &Path) -> String {
    format!("{:#}", load_reviews(p).unwrap_err())
}

#[test]
fn missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.tar.gz");
    let e = err(&p);
    assert!(
        e.contains("nope.tar.gz") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn not_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain.tar.gz");
    fs::write(&p, b"this is not gzip at all").unwrap();
    let e = err(&p);
    assert!(
        e.contains("plain.tar.gz") && e.contains("not a gzip"),
        "{e}"
    );
    let empty = dir.path().join("empty.tar.gz");
    fs::write(&empty, b"").unwrap();
    assert!(err(&empty).contains("not a gzip"));
}

#[test]
fn truncated_archive() {
    let dir = tempfile::tempdir().unwrap();
    let full = tar_gz_bytes(&files(true));
    // Cut in the middle, and also just before the gzip trailer (only the CRC check can catch it).
    for cut in [full.len() / 2, full.len() - 4] {
        let p = dir.path().join(format!("cut{cut}.tar.gz"));
        fs::write(&p, &full[..cut]).unwrap();
        let e = err(&p);
        assert!(e.contains("corrupt or truncated"), "cut {cut}: {e}");
    }
    // Corrupt a byte inside the compressed stream.
    let mut bad = full.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let p = dir.path().join("flipped.tar.gz");
    fs::write(&p, &bad).unwrap();
    assert!(load_reviews(&p).is_err());
}

#[test]
fn folder_without_test_or_train() {
    let dir = tempfile::tempdir().unwrap();
    let no_test: Vec<_> = files(true)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("aclImdb/test/"))
        .collect();
    write_folder(dir.path(), &no_test);
    let e = err(dir.path());
    assert!(e.contains("no test reviews"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let no_train: Vec<_> = files(true)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("aclImdb/train/"))
        .collect();
    write_folder(dir.path(), &no_train);
    let e = err(dir.path());
    assert!(e.contains("no train reviews"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let e = err(dir.path());
    assert!(e.contains("neither train/"), "{e}");

    // The same check for an archive with only unsup reviews in train/.
    let only_unsup: Vec<_> = files(true)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("aclImdb/train/pos") && !p.starts_with("aclImdb/train/neg"))
        .collect();
    let p = write_archive(dir.path(), &only_unsup);
    let e = err(&p);
    assert!(e.contains("no train reviews"), "{e}");
}

#[test]
fn bad_names_in_review_folders_are_errors() {
    let mut f = files(false);
    f.push(("aclImdb/test/pos/notes.txt".into(), b"x".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let p = write_archive(dir.path(), &f);
    let e = err(&p);
    assert!(e.contains("aclImdb/test/pos/notes.txt"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), &f);
    let e = err(dir.path());
    assert!(e.contains("notes.txt"), "{e}");

    // Outside pos/neg a stray file is just ignored.
    let mut f = files(false);
    f.push(("aclImdb/test/notes.txt".into(), b"x".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    check(&load_reviews(&write_archive(dir.path(), &f)).unwrap());
}

#[test]
fn duplicate_ids_are_errors() {
    let mut f = files(false);
    f.push(("aclImdb/train/pos/10_8.txt".into(), b"again".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let e = err(&write_archive(dir.path(), &f));
    assert!(e.contains("id 10 twice"), "{e}");
}

#[test]
fn loading_an_archive_writes_nothing_next_to_it() {
    // The loader must not unpack anything next to the archive.
    let dir = tempfile::tempdir().unwrap();
    let p = write_archive(dir.path(), &files(true));
    load_reviews(&p).unwrap();
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}
