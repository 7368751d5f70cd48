//! Hostile input, end to end through the real binary: every bad archive, folder, flag, model file,
//! text and output place gets a non-zero exit with one clear line naming it (or succeeds where
//! succeeding is right), never a panic, and never a half-written file. Each test here is one row of
//! the README's "What happens when..." tables.

mod common;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Runs `cmd` and checks the failure contract: exit `code`, no panic, stderr is exactly one line
/// starting with `error: ` and containing every needle. Returns stderr.
fn fails(cmd: &mut Command, code: i32, needles: &[&str]) -> String {
    let result = run(cmd);
    assert_refused(cmd, result, code, needles)
}

/// Runs `cmd` and checks it succeeds without a panic. Returns stdout.
fn succeeds(cmd: &mut Command) -> String {
    let (code, out, err) = run(cmd);
    assert!(!err.contains("panicked"), "{cmd:?} panicked: {err}");
    assert_eq!(code, 0, "{cmd:?} failed: {err}");
    out
}

/// One entry of a hand-made tar archive.
enum Entry<'a> {
    /// A regular file (the name is written raw, so `..` and non-UTF-8 bytes are possible).
    File(&'a [u8], &'a [u8]),
    /// A symbolic link `name -> target`.
    Symlink(&'a str, &'a str),
    /// A hard link `name -> target`.
    HardLink(&'a str, &'a str),
}

/// Writes raw `name` bytes into a header (the tar crate's `set_path` refuses `..`, rightly for
/// a writer; a hostile archive does not ask).
fn raw_header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h
}

/// The bytes of a `.tar.gz` holding `entries`.
fn targz_bytes(entries: &[Entry]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for e in entries {
        match e {
            Entry::File(name, data) => {
                let mut h = raw_header(name, tar::EntryType::Regular, data.len() as u64);
                h.set_cksum();
                tar.append(&h, *data).unwrap();
            }
            Entry::Symlink(name, target) | Entry::HardLink(name, target) => {
                let kind = if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = raw_header(name.as_bytes(), kind, 0);
                h.set_link_name(target).unwrap();
                h.set_cksum();
                tar.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Good reviews for every split and label (owned names and texts for [`Entry::File`]).
fn good_files(per_class: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    for split in ["train", "test"] {
        for (label, positive) in [("pos", true), ("neg", false)] {
            for id in 0..per_class {
                let rating = if positive { 8 } else { 2 };
                v.push((
                    format!("aclImdb/{split}/{label}/{id}_{rating}.txt").into_bytes(),
                    review(positive, id + if split == "test" { 1000 } else { 0 }).into_bytes(),
                ));
            }
        }
    }
    v
}

fn as_entries(files: &[(Vec<u8>, Vec<u8>)]) -> Vec<Entry<'_>> {
    files
        .iter()
        .map(|(n, d)| Entry::File(n.as_slice(), d.as_slice()))
        .collect()
}

/// `files` as a .tar.gz named `name` in `dir`.
fn archive(dir: &Path, name: &str, files: &[(Vec<u8>, Vec<u8>)]) -> PathBuf {
    write(dir, name, &targz_bytes(&as_entries(files)))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// `train` on `data` with the small model, one quiet epoch, into `out`.
fn train(data: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--epochs", "1", "--quiet", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(small_model_flags());
    c
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// No temp or partial file is left anywhere under `dir`.
fn assert_no_temp_files(dir: &Path) {
    let left: Vec<_> = files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp"))
        })
        .collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}

/// A trained tiny model, made once per test process (in cargo's own test temp folder).
fn model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = tiny_archive(&dir, 20);
        succeeds(&mut train(&archive, &dir.join("run")));
        dir.join("run/model.safetensors")
    })
}

/// The model file with its safetensors header JSON edited by `f` (length prefix recomputed).
fn edit_header(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let bytes = std::fs::read(model()).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    f(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    out
}

fn predict_with(model: &Path) -> Command {
    let mut c = bin();
    c.args(["predict", "--model"]).arg(model);
    c
}

// ---------------------------------------------------------------- data archives and folders

#[test]
fn data_path_missing() {
    let tmp = tempfile::tempdir().unwrap();
    fails(
        &mut train(&tmp.path().join("nope.tar.gz"), &tmp.path().join("run")),
        1,
        &["--data", "nope.tar.gz", "no such file or folder"],
    );
}

#[test]
fn data_not_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "notes.tar.gz", b"just some text, not gzip");
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["notes.tar.gz", "is not a gzip file"],
    );
}

#[test]
fn data_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "empty.tar.gz", b"");
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["empty.tar.gz", "is not a gzip file"],
    );
}

#[test]
fn data_is_a_model_file() {
    let tmp = tempfile::tempdir().unwrap();
    fails(
        &mut train(model(), &tmp.path().join("run")),
        1,
        &["model.safetensors", "is not a gzip file"],
    );
}

#[test]
fn data_is_a_device() {
    let tmp = tempfile::tempdir().unwrap();
    fails(
        &mut train(Path::new("/dev/null"), &tmp.path().join("run")),
        1,
        &["/dev/null", "is not a gzip file"],
    );
}

#[test]
fn data_truncated_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(tiny_archive(tmp.path(), 10)).unwrap();
    let p = write(tmp.path(), "cut.tar.gz", &good[..good.len() / 2]);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["cut.tar.gz", "corrupt or truncated", "download it again"],
    );
}

#[test]
fn data_corrupt_bytes_in_the_middle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(tiny_archive(tmp.path(), 10)).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let p = write(tmp.path(), "flipped.tar.gz", &bytes);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["flipped.tar.gz", "corrupt or truncated"],
    );
}

#[test]
fn data_gzip_of_something_not_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b"hello, this is a gzipped text file and no tar at all\n".repeat(50))
        .unwrap();
    let p = write(tmp.path(), "text.gz", &gz.finish().unwrap());
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["text.gz", "corrupt or truncated"],
    );
}

#[test]
fn data_empty_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "empty.tar.gz", &targz_bytes(&[]));
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &[
            "no train or test reviews found",
            "empty.tar.gz",
            "aclImdb/train/pos/0_9.txt",
        ],
    );
}

#[test]
fn data_archive_without_test() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = good_files(3)
        .into_iter()
        .filter(|(n, _)| !n.starts_with(b"aclImdb/test"))
        .collect();
    let p = archive(tmp.path(), "no_test.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["no test reviews found", "no_test.tar.gz"],
    );
}

#[test]
fn data_archive_without_train() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = good_files(3)
        .into_iter()
        .filter(|(n, _)| !n.starts_with(b"aclImdb/train"))
        .collect();
    let p = archive(tmp.path(), "no_train.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["no train reviews found", "no_train.tar.gz"],
    );
}

#[test]
fn data_files_in_the_wrong_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let text = review(true, 1);
    let t = text.as_bytes();
    let entries = [
        Entry::File(b"aclImdb/1_9.txt", t),
        Entry::File(b"aclImdb/train/1_9.txt", t),
        Entry::File(b"aclImdb/train/good/1_9.txt", t),
        Entry::File(b"aclImdb/pos/train/1_9.txt", t),
        Entry::File(b"aclImdb/train/unsup/1_0.txt", t),
    ];
    let p = write(tmp.path(), "layout.tar.gz", &targz_bytes(&entries));
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["no train or test reviews found", "layout.tar.gz"],
    );
}

#[test]
fn data_badly_named_file_in_a_review_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(3);
    files.push((
        b"aclImdb/train/pos/great_review.txt".to_vec(),
        b"x".to_vec(),
    ));
    let p = archive(tmp.path(), "names.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["unexpected file", "great_review.txt", "ID_RATING.txt"],
    );
}

#[test]
fn data_duplicate_review_id() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(3);
    files.push((b"aclImdb/train/pos/1_10.txt".to_vec(), b"again".to_vec()));
    let p = archive(tmp.path(), "dup.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["dup.tar.gz", "review id 1 twice", "train/pos"],
    );
}

#[test]
fn data_all_reviews_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = good_files(3)
        .into_iter()
        .map(|(n, _)| (n, b" \n".to_vec()))
        .collect();
    let p = archive(tmp.path(), "blank.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["blank.tar.gz", "all 6 train reviews are empty"],
    );
}

#[test]
fn data_some_reviews_empty_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(4);
    files[0].1.clear();
    files[5].1 = b"\n\n".to_vec();
    let p = archive(tmp.path(), "some_empty.tar.gz", &files);
    succeeds(&mut train(&p, &tmp.path().join("run")));
}

#[test]
fn data_non_utf8_reviews_are_read_lossily() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(4);
    files[0].1 = b"great \xff\xfe film, caf\xe9 latin-1 \x00\x01 superb".to_vec();
    files[9].1 = vec![0x80; 300];
    let p = archive(tmp.path(), "latin1.tar.gz", &files);
    succeeds(&mut train(&p, &tmp.path().join("run")));
}

#[test]
fn data_non_utf8_file_name_in_a_review_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(3);
    files.push((b"aclImdb/train/pos/7_\xff.txt".to_vec(), b"x".to_vec()));
    let p = archive(tmp.path(), "badname.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &["unexpected file", "badname.tar.gz"],
    );
}

/// A file under a non-UTF-8 folder inside `pos/` is not a review of `pos/` (the folder used to be
/// dropped from the path, shifting the file up into `pos/`).
#[test]
fn data_non_utf8_folder_inside_a_review_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(4);
    files.push((
        b"aclImdb/train/pos/\xff/50_9.txt".to_vec(),
        b"zzhiddenword zzhiddenword".to_vec(),
    ));
    let p = archive(tmp.path(), "subdir.tar.gz", &files);
    let run_dir = tmp.path().join("run");
    succeeds(&mut train(&p, &run_dir));
    let m = imdb_lstm::model_file::load(&run_dir.join("model.safetensors")).unwrap();
    assert!(!m.vocabulary.iter().any(|w| w == "zzhiddenword"));
}

#[test]
fn data_review_of_10_mb() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(4);
    files[0].1 = "a superb wonderful film "
        .repeat(10 * 1024 * 1024 / 24)
        .into_bytes();
    let p = archive(tmp.path(), "big.tar.gz", &files);
    succeeds(&mut train(&p, &tmp.path().join("run")));
}

/// A gzip bomb: a 65 MiB review (a few hundred KB compressed) is refused before it is read whole.
#[test]
fn data_review_over_64_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = good_files(2);
    files[0].1 = vec![b'a'; 65 << 20];
    let p = archive(tmp.path(), "bomb.tar.gz", &files);
    fails(
        &mut train(&p, &tmp.path().join("run")),
        1,
        &[
            "the review file aclImdb/train/pos/0_8.txt (in",
            "bomb.tar.gz",
            "larger than 64 MiB",
        ],
    );
}

/// In a data folder a link to /dev/zero (or a FIFO) would never end: only regular files are read.
#[test]
fn data_folder_with_a_link_to_a_device() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("aclImdb");
    for (name, data) in good_files(2) {
        let path = tmp.path().join(String::from_utf8(name).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    std::os::unix::fs::symlink("/dev/zero", root.join("train/pos/77_9.txt")).unwrap();
    fails(
        &mut train(&root, &tmp.path().join("run")),
        1,
        &["77_9.txt", "is not a regular file"],
    );
}

/// A symlink (or hard link) in a review folder is ignored, never followed: the target's words
/// never reach the vocabulary.
#[test]
fn data_symlink_and_hardlink_entries_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = write(
        tmp.path(),
        "secret.txt",
        b"zzsecretword zzsecretword zzsecretword",
    );
    let files = good_files(4);
    let mut entries = as_entries(&files);
    let target = secret.to_str().unwrap();
    entries.push(Entry::Symlink("aclImdb/train/pos/90_9.txt", target));
    entries.push(Entry::Symlink(
        "aclImdb/train/neg/91_1.txt",
        "../../../secret.txt",
    ));
    entries.push(Entry::HardLink("aclImdb/train/pos/92_9.txt", target));
    let p = write(tmp.path(), "links.tar.gz", &targz_bytes(&entries));
    let run_dir = tmp.path().join("run");
    succeeds(&mut train(&p, &run_dir));
    let m = imdb_lstm::model_file::load(&run_dir.join("model.safetensors")).unwrap();
    assert!(!m.vocabulary.iter().any(|w| w == "zzsecretword"));
    // 4 per class: the links added no review.
    let (_, out, _) = run(bin()
        .args(["evaluate", "--json", "--model"])
        .arg(run_dir.join("model.safetensors"))
        .arg("--data")
        .arg(&p));
    assert!(out.contains("\"count\":8"), "{out}");
}

/// `..` and absolute paths are only names: nothing is ever written where they point.
#[test]
fn data_dot_dot_and_absolute_paths_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("a/b");
    std::fs::create_dir_all(&work).unwrap();
    let escape_abs = tmp.path().join("abs_escape/x_1.txt");
    let abs = escape_abs.to_str().unwrap().as_bytes().to_vec();
    let files = good_files(4);
    let mut entries = as_entries(&files);
    entries.push(Entry::File(b"../../escape/evil.txt", b"owned"));
    entries.push(Entry::File(
        b"aclImdb/../../../escape2/train/pos/99_9.txt",
        b"great",
    ));
    entries.push(Entry::File(&abs, b"owned"));
    let p = write(tmp.path(), "dotdot.tar.gz", &targz_bytes(&entries));
    let before: Vec<_> = files_under(tmp.path());
    let mut c = train(&p, &work.join("run"));
    c.current_dir(&work);
    succeeds(&mut c);
    let new: Vec<_> = files_under(tmp.path())
        .into_iter()
        .filter(|f| !before.contains(f) && !f.starts_with(work.join("run")))
        .collect();
    assert!(new.is_empty(), "written outside the run folder: {new:?}");
    assert!(!tmp.path().join("escape").exists() && !tmp.path().join("abs_escape").exists());
}

#[test]
fn data_env_variable_names_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bin();
    c.args(["train", "--quiet", "--out"])
        .arg(tmp.path().join("run"))
        .env("IMDB_LSTM_DATA", tmp.path().join("gone.tar.gz"));
    fails(
        &mut c,
        1,
        &[
            "IMDB_LSTM_DATA=",
            "gone.tar.gz",
            "fix or unset the variable",
        ],
    );
}

#[test]
fn data_cached_archive_of_the_wrong_size() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("imdb-lstm");
    std::fs::create_dir(&cache).unwrap();
    tiny_archive(&cache, 2);
    std::fs::rename(
        cache.join("tiny_imdb.tar.gz"),
        cache.join("aclImdb_v1.tar.gz"),
    )
    .unwrap();
    let mut c = bin();
    c.args(["train", "--quiet", "--out"])
        .arg(tmp.path().join("run"))
        .env("XDG_CACHE_HOME", tmp.path());
    fails(
        &mut c,
        1,
        &[
            "the cached archive",
            "aclImdb_v1.tar.gz",
            "not 84125825",
            "delete it",
        ],
    );
}

/// No --data, no variable, and a cache folder that cannot exist: fails before any download.
#[test]
fn data_cache_folder_under_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "not_a_folder", b"x");
    let mut c = bin();
    c.args(["train", "--quiet", "--out"])
        .arg(tmp.path().join("run"))
        .env("XDG_CACHE_HOME", &file);
    fails(
        &mut c,
        1,
        &[
            "cannot create the folder",
            "not_a_folder/imdb-lstm",
            "pass its path with --data",
        ],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn data_folder_without_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("reviews");
    std::fs::create_dir(&d).unwrap();
    write(&d, "1_9.txt", b"good");
    fails(
        &mut train(&d, &tmp.path().join("run")),
        1,
        &["reviews", "holds neither train/ and test/ nor aclImdb/"],
    );
}

// ---------------------------------------------------------------- run folder and disk

#[test]
fn out_under_a_regular_file() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let file = write(tmp.path(), "plain_file", b"x");
    fails(
        &mut train(&archive, &file.join("run")),
        1,
        &["cannot create the run folder", "plain_file/run", "--out"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn out_is_an_existing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let file = write(tmp.path(), "taken", b"keep me");
    fails(
        &mut train(&archive, &file),
        1,
        &["cannot create the run folder", "taken"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

/// Unmounts the test's tmpfs however the test ends.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk (a 64 KiB tmpfs): train fails with one line naming the file it could not write,
/// and leaves no temp file behind.
#[test]
fn disk_full_during_train() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 20);
    let mnt = tmp.path().join("small_disk");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("cannot mount a tmpfs here (not root?): skipping the full-disk test");
        return;
    }
    let _guard = Mounted(mnt.clone());
    // Fill most of it so not even the model file fits.
    std::fs::write(mnt.join("filler"), vec![0u8; 60 * 1024]).unwrap();
    let err = fails(
        &mut train(&archive, &mnt.join("run")),
        1,
        &["No space left on device"],
    );
    eprintln!("full disk: {err}");
    assert!(err.contains("small_disk/run"), "{err}");
    assert_no_temp_files(&mnt);
}

// ---------------------------------------------------------------- flags

#[test]
fn flags_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    let out = tmp.path().join("run");
    for (flags, needles) in [
        (vec!["--threads", "0"], vec!["--threads 0"]),
        (vec!["--learning-rate", "NaN"], vec!["--learning-rate NaN"]),
        (vec!["--learning-rate", "inf"], vec!["--learning-rate inf"]),
        (vec!["--dropout", "NaN"], vec!["--dropout NaN"]),
        (vec!["--limit", "0"], vec!["--limit 0"]),
        (
            vec!["--validation-split", "0.99"],
            vec!["validation split 0.99", "empty"],
        ),
    ] {
        let mut c = bin();
        c.args(["train", "--quiet", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(&out)
            .args(["--num-words", "60", "--maxlen", "24", "--units", "8"])
            .args(&flags);
        fails(&mut c, 1, &needles);
    }
}

/// Values clap cannot parse at all: exit 2 and clap's message naming the flag and value.
#[test]
fn flags_not_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--epochs", "-1"),
        ("--maxlen", "eighty"),
        ("--seed", "1e3"),
    ] {
        let (code, _, err) = run(bin()
            .args(["train", "--data"])
            .arg(tmp.path())
            .arg(format!("{flag}={value}")));
        assert_eq!(code, 2, "{err}");
        assert!(!err.contains("panicked"));
        let first = err.lines().next().unwrap();
        assert!(
            first.starts_with("error: invalid value")
                && first.contains(flag)
                && first.contains(value),
            "{err}"
        );
    }
}

#[test]
fn evaluate_limit_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    fails(
        bin()
            .args(["evaluate", "--limit", "0", "--model"])
            .arg(model())
            .arg("--data")
            .arg(&archive),
        1,
        &["--limit 0"],
    );
}

#[test]
fn evaluate_threads_zero() {
    fails(
        bin()
            .args(["evaluate", "--threads", "0", "--model"])
            .arg(model()),
        1,
        &["--threads 0"],
    );
}

#[test]
fn evaluate_data_without_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<_> = good_files(3)
        .into_iter()
        .filter(|(n, _)| !n.starts_with(b"aclImdb/test"))
        .collect();
    let p = archive(tmp.path(), "train_only.tar.gz", &files);
    fails(
        bin()
            .args(["evaluate", "--model"])
            .arg(model())
            .arg("--data")
            .arg(&p),
        1,
        &["no test reviews found", "train_only.tar.gz"],
    );
}

// ---------------------------------------------------------------- model files

#[test]
fn model_file_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "empty.safetensors", b"");
    fails(
        predict_with(&p).arg("good"),
        1,
        &["empty.safetensors", "empty (0 bytes)"],
    );
}

#[test]
fn model_file_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(model()).unwrap();
    let p = write(tmp.path(), "cut.safetensors", &bytes[..bytes.len() - 100]);
    fails(
        predict_with(&p).arg("good"),
        1,
        &["cut.safetensors", "truncated file"],
    );
}

#[test]
fn model_file_is_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    fails(
        predict_with(tmp.path()).arg("good"),
        1,
        &["cannot read model file", "Is a directory"],
    );
}

#[test]
fn model_file_from_a_newer_format_version() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = edit_header(|h| h["__metadata__"]["format_version"] = "3".into());
    let p = write(tmp.path(), "v3.safetensors", &bytes);
    fails(
        predict_with(&p).arg("good"),
        1,
        &["v3.safetensors", "format version 3", "upgrade imdb-lstm"],
    );
}

#[test]
fn model_file_of_another_program() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = edit_header(|h| h["__metadata__"]["format"] = "pt".into());
    let p = write(tmp.path(), "other.safetensors", &bytes);
    fails(
        predict_with(&p).arg("good"),
        1,
        &["other.safetensors", "not an imdb-lstm model file", "\"pt\""],
    );
}

#[test]
fn model_file_with_wrong_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    // Same size, transposed: the data still fits, the shape does not.
    let bytes = edit_header(|h| {
        let s = h["lstm/kernel"]["shape"].as_array_mut().unwrap();
        s.reverse();
    });
    let p = write(tmp.path(), "shape.safetensors", &bytes);
    fails(
        predict_with(&p).arg("good"),
        1,
        &[
            "shape.safetensors",
            "tensor \"lstm/kernel\" has shape [48, 16], expected [16, 48]",
        ],
    );
}

#[test]
fn model_file_config_disagrees_with_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = edit_header(|h| {
        let c = h["__metadata__"]["arch"].as_str().unwrap();
        let mut c: serde_json::Value = serde_json::from_str(c).unwrap();
        c["layers"][1]["config"]["units"] = 13.into();
        h["__metadata__"]["arch"] = c.to_string().into();
    });
    let p = write(tmp.path(), "config.safetensors", &bytes);
    fails(
        predict_with(&p).arg("good"),
        1,
        &["config.safetensors", "has shape", "LSTM(13)"],
    );
}

#[test]
fn model_file_with_a_nan_weight() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(model()).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = write(tmp.path(), "nan.safetensors", &bytes);
    fails(
        predict_with(&p).arg("good"),
        1,
        &["nan.safetensors", "non-finite weight"],
    );
}

/// maxlen shapes no tensor: a tiny file claiming 2^28 tokens per review used to make predict
/// allocate 16 GiB and abort (exit 134).
#[test]
fn model_file_with_a_huge_maxlen() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = edit_header(|h| {
        for key in ["arch", "preprocessing"] {
            let c = h["__metadata__"][key].as_str().unwrap();
            let mut c: serde_json::Value = serde_json::from_str(c).unwrap();
            c["maxlen"] = (1u64 << 28).into();
            h["__metadata__"][key] = c.to_string().into();
        }
    });
    let p = write(tmp.path(), "long.safetensors", &bytes);
    fails(
        predict_with(&p).arg("good"),
        1,
        &[
            "long.safetensors",
            "\"arch\"",
            "maxlen 268435456 is outside 1..=1048576",
        ],
    );
    let err = imdb_lstm::model_file::load_bytes(&bytes).unwrap_err();
    assert!(format!("{err}").contains("maxlen"), "{err}");
}

#[test]
fn model_file_is_the_data_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 2);
    fails(
        predict_with(&archive).arg("good"),
        1,
        &["tiny_imdb.tar.gz", "not a safetensors file"],
    );
}

// ---------------------------------------------------------------- predict input and output

#[test]
fn predict_empty_text() {
    predict_answered(predict_with(model()).arg("   "), 1, &["argument 1"]);
}

#[test]
fn predict_binary_or_symbol_text() {
    predict_answered(
        predict_with(model()).args(["fine words", "\u{1}\u{2}<br />%%% ###"]),
        2,
        &["argument 2"],
    );
}

#[test]
fn predict_file_not_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "latin1.txt", b"ok\nno\nbad caf\xe9\n");
    fails(
        predict_with(model()).arg("--file").arg(&p),
        1,
        &["latin1.txt, line 3: not UTF-8"],
    );
}

#[test]
fn predict_file_missing_or_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    fails(
        predict_with(model())
            .arg("--file")
            .arg(tmp.path().join("nope.txt")),
        1,
        &["cannot read", "nope.txt", "No such file"],
    );
    fails(
        predict_with(model()).arg("--file").arg(tmp.path()),
        1,
        &["cannot read", "Is a directory"],
    );
}

/// An endless input (`--file /dev/zero`) is cut at 256 MiB with an error, not read until memory
/// runs out.
#[test]
fn predict_file_endless() {
    if !Path::new("/dev/zero").exists() {
        eprintln!("no /dev/zero here: skipping");
        return;
    }
    fails(
        predict_with(model()).args(["--file", "/dev/zero"]),
        1,
        &["/dev/zero holds more than 256 MiB of text", "split it"],
    );
}

#[test]
fn predict_stdin_closed() {
    let mut c = predict_with(model());
    c.args(["--file", "-"]).stdin(Stdio::null());
    fails(&mut c, 1, &["no reviews given"]);
}

#[test]
fn predict_stdin_only_blank_lines() {
    let mut c = predict_with(model());
    c.args(["--file", "-"]).stdin(Stdio::piped());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\n  \n\t\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    let want: String = (1..=3)
        .map(|n| predict_warning(&format!("standard input, line {n}")))
        .collect();
    assert_eq!(err, want);
}

#[test]
fn predict_review_of_10_mb() {
    let tmp = tempfile::tempdir().unwrap();
    let line = "a superb wonderful film ".repeat(10 * 1024 * 1024 / 24);
    let p = write(
        tmp.path(),
        "big.txt",
        format!("{line}\nawful boring\n").as_bytes(),
    );
    let out = succeeds(predict_with(model()).arg("--file").arg(&p));
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// stdout on a full device: one error line, not a panic.
#[test]
fn predict_stdout_full() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here: skipping");
        return;
    };
    let mut c = predict_with(model());
    c.arg("a fine film").stdout(full);
    fails(
        &mut c,
        1,
        &[
            "cannot write the predictions to standard output",
            "No space left",
        ],
    );
}

/// stdout closed early (`| head -1`): stop quietly, exit 0.
#[test]
fn predict_stdout_closed_early() {
    let mut c = predict_with(model());
    let texts: Vec<String> = (0..5000)
        .map(|i| format!("film number {i} was great"))
        .collect();
    c.args(&texts).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn predict_threads_zero() {
    fails(
        predict_with(model()).args(["--threads", "0", "good"]),
        1,
        &["--threads 0"],
    );
}

// ---------------------------------------------------------------- vocabulary properties

mod vocabulary_properties {
    use imdb_lstm::data::{tokenize, Preprocessing, Vocabulary};
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Texts from a small pool (so counts tie often) with case, apostrophes, `<br />`, Unicode.
    fn texts() -> impl Strategy<Value = Vec<String>> {
        let word = prop::sample::select(vec![
            "the", "The", "film", "FILM", "don't", "'quoted'", "café", "CAFÉ", "ß", "δ", "a1",
            "42", "br", "x", "y", "z", "zz", "é",
        ]);
        let sep = prop::sample::select(vec![" ", ", ", "<br />", "<BR>", "... ", "\n", "'"]);
        let text = prop::collection::vec((word, sep), 0..25)
            .prop_map(|ws| ws.into_iter().map(|(w, s)| format!("{w}{s}")).collect());
        prop::collection::vec(text, 0..12)
    }

    fn pre(num_words: usize) -> Preprocessing {
        Preprocessing {
            num_words,
            ..Preprocessing::default()
        }
    }

    proptest! {
        // No failure file: integration tests have no lib.rs beside them for proptest to find.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Ranks are counts descending, ties ascending by word, and every token is ranked.
        #[test]
        fn ranking_order(texts in texts()) {
            let v = Vocabulary::build(texts.iter().map(String::as_str));
            let mut counts: HashMap<String, u64> = HashMap::new();
            for t in &texts {
                for tok in tokenize(t) {
                    *counts.entry(tok).or_default() += 1;
                }
            }
            prop_assert_eq!(v.len(), counts.len());
            for w in v.words().windows(2) {
                let (a, b) = (counts[&w[0]], counts[&w[1]]);
                prop_assert!(a > b || (a == b && w[0] < w[1]), "{:?} ({}) before {:?} ({})", w[0], a, w[1], b);
            }
            for (i, w) in v.words().iter().enumerate() {
                prop_assert_eq!(v.rank(w), Some(i as u32 + 1));
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let (v2, ranks) = Vocabulary::build_with_ranks(&refs);
            prop_assert_eq!(&v2, &v);
            for (t, r) in texts.iter().zip(&ranks) {
                let want: Vec<u32> = tokenize(t).iter().map(|w| v.rank(w).unwrap()).collect();
                prop_assert_eq!(r, &want);
            }
        }

        /// encode = start id + one id per token; ids are rank + 3 below num_words, else oov;
        /// the kept vocabulary encodes exactly like the full one; padding keeps ids in range.
        #[test]
        fn encode_and_kept_agree(texts in texts(), probe in texts(), num_words in 4usize..30) {
            let v = Vocabulary::build(texts.iter().map(String::as_str));
            let p = pre(num_words);
            let kept = v.kept(&p);
            prop_assert!(kept.len() <= num_words - 4);
            prop_assert_eq!(kept.words(), &v.words()[..kept.len()]);
            prop_assert_eq!(&Vocabulary::from_words(v.words().to_vec()), &v);
            for t in texts.iter().chain(&probe) {
                let ids = v.encode(t, &p);
                let toks = tokenize(t);
                prop_assert_eq!(ids.len(), toks.len() + 1);
                prop_assert_eq!(ids[0], p.start_id);
                for (tok, &id) in toks.iter().zip(&ids[1..]) {
                    let want = match v.rank(tok) {
                        Some(r) if (r as usize + 3) < num_words => r + 3,
                        _ => p.oov_id,
                    };
                    prop_assert_eq!(id, want, "token {:?}", tok);
                }
                prop_assert_eq!(&kept.encode(t, &p), &ids);
                let row = p.encode_padded(&kept, None, t);
                prop_assert_eq!(row.len(), p.maxlen);
                prop_assert!(row.iter().all(|&i| (i as usize) < num_words));
            }
        }
    }
}

/// summary, plot and graph on a full stdout: one error line, not a panic; train keeps going
/// (its console lines are informational) and still saves the model.
#[test]
fn other_commands_stdout_full() {
    let open_full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .ok()
    };
    let Some(full) = open_full() else {
        eprintln!("no /dev/full here: skipping");
        return;
    };
    let mut c = bin();
    c.args(["summary", "--model"]).arg(model()).stdout(full);
    fails(&mut c, 1, &["cannot write the summary to standard output"]);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 10);
    let mut c = bin();
    c.args(["train", "--epochs", "1", "--data"])
        .arg(&archive)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .args(small_model_flags())
        .stdout(open_full().unwrap());
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(tmp.path().join("run/model.safetensors").is_file());
}

/// Sizes that cannot fit are refused up front, naming the flag, before any data is read.
#[test]
fn sizes_too_large_for_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tiny_archive(tmp.path(), 4);
    for (flag, value) in [
        ("--maxlen", "1000000000"),
        ("--units", "100000"),
        ("--num-words", "100000000"),
    ] {
        let mut c = bin();
        c.args(["train", "--data"])
            .arg(&archive)
            .arg("--out")
            .arg(tmp.path().join("run"))
            .args([flag, value]);
        fails(&mut c, 1, &[flag]);
    }
}

/// A data error leaves no empty run folder behind; a folder the user made is kept.
#[test]
fn data_error_leaves_no_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let new_dir = tmp.path().join("new-run");
    fails(
        &mut train(Path::new("/dev/null"), &new_dir),
        1,
        &["/dev/null"],
    );
    assert!(
        !new_dir.exists(),
        "the empty run folder made for a failed run must be removed"
    );
    let mine = tmp.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    fails(&mut train(Path::new("/dev/null"), &mine), 1, &["/dev/null"]);
    assert!(mine.is_dir(), "a folder the user made is never removed");
}
