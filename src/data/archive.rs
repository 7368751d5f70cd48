//! Reading the reviews from the dataset as published: a `.tar.gz` (streamed, never unpacked) or a
//! folder in the `aclImdb` layout.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// The largest review file read (64 MiB; the longest IMDB review is about 14 KB, and a 10 MB one
/// is fine). Bigger is a damaged or hostile file, e.g. a gzip bomb, refused before memory runs out.
pub const MAX_REVIEW_BYTES: u64 = 64 << 20;
/// The most review text read in all (2 GiB; the data set holds about 65 MB).
pub const MAX_TOTAL_BYTES: u64 = 2 << 30;

/// Size limits for reading, so tests can use small ones.
#[derive(Clone, Copy)]
struct Limits {
    review: u64,
    total: u64,
}

const LIMITS: Limits = Limits {
    review: MAX_REVIEW_BYTES,
    total: MAX_TOTAL_BYTES,
};

/// Reads all of `r` into `buf` (cleared first), refusing more than `limits.review` bytes or a
/// running total `*total` above `limits.total`; `shown` names the file in the error.
fn read_review(
    r: impl Read,
    buf: &mut Vec<u8>,
    total: &mut u64,
    limits: Limits,
    shown: &dyn Fn() -> String,
) -> Result<io::Result<()>> {
    buf.clear();
    if let Err(e) = r.take(limits.review + 1).read_to_end(buf) {
        return Ok(Err(e));
    }
    let n = buf.len() as u64;
    if n > limits.review {
        bail!(
            "the review file {} is larger than {} MiB: this is not the IMDB data set (or it is \
             damaged); get a fresh copy",
            shown(),
            limits.review >> 20
        );
    }
    *total += n;
    if *total > limits.total {
        bail!(
            "the reviews add up to more than {} MiB of text by {}: this is not the IMDB data set \
             (or it is damaged); get a fresh copy",
            limits.total >> 20,
            shown()
        );
    }
    Ok(Ok(()))
}

/// One labelled review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// The id from the file name `ID_RATING.txt`.
    pub id: u32,
    /// The star rating from the file name (1-10).
    pub rating: u8,
    /// 1 for `pos`, 0 for `neg`.
    pub label: u8,
    /// The review text (non-UTF-8 bytes decoded lossily).
    pub text: String,
}

/// The labelled reviews of both splits, each sorted by (label, numeric id).
#[derive(Clone, Debug, Default)]
pub struct RawDataset {
    /// The `train/{pos,neg}` reviews.
    pub train: Vec<Review>,
    /// The `test/{pos,neg}` reviews.
    pub test: Vec<Review>,
}

/// Which split a review file belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

/// Parses `ID_RATING.txt` into (id, rating).
fn parse_name(name: &str) -> Option<(u32, u8)> {
    let stem = name.strip_suffix(".txt")?;
    let (id, rating) = stem.split_once('_')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(id) || !all_digits(rating) {
        return None;
    }
    let rating: u8 = rating.parse().ok()?;
    if !(1..=10).contains(&rating) {
        return None;
    }
    Some((id.parse().ok()?, rating))
}

/// Classifies a file by its last three path components `{train,test}/{pos,neg}/NAME`.
/// `Ok(None)`: not a review file (ignored). `Err`: inside a pos/neg folder but a bad name.
fn classify(
    split: &str,
    label: &str,
    name: &str,
    shown: &dyn Fn() -> String,
) -> Result<Option<(Split, u8, u32, u8)>> {
    let split = match split {
        "train" => Split::Train,
        "test" => Split::Test,
        _ => return Ok(None),
    };
    let label = match label {
        "pos" => 1,
        "neg" => 0,
        _ => return Ok(None),
    };
    // Hidden files (.DS_Store, AppleDouble "._x") are file-system litter, not reviews.
    if name.starts_with('.') {
        return Ok(None);
    }
    match parse_name(name) {
        Some((id, rating)) => Ok(Some((split, label, id, rating))),
        None => bail!(
            "unexpected file {} in a review folder: review files must be named ID_RATING.txt \
             (e.g. 123_8.txt, rating 1-10); remove it or fix the data",
            shown()
        ),
    }
}

/// Sorts each split by (label, id), rejects duplicates, and checks both splits are present.
fn finish(mut data: RawDataset, path: &Path) -> Result<RawDataset> {
    for (name, reviews) in [("train", &mut data.train), ("test", &mut data.test)] {
        reviews.sort_unstable_by_key(|r| (r.label, r.id));
        if let Some(w) = reviews
            .windows(2)
            .find(|w| w[0].label == w[1].label && w[0].id == w[1].id)
        {
            bail!(
                "{} holds review id {} twice in {name}/{}; the data is damaged, get a fresh copy",
                path.display(),
                w[0].id,
                if w[0].label == 1 { "pos" } else { "neg" }
            );
        }
    }
    let missing: Vec<&str> = [
        ("train", data.train.is_empty()),
        ("test", data.test.is_empty()),
    ]
    .into_iter()
    .filter(|(_, empty)| *empty)
    .map(|(n, _)| n)
    .collect();
    if !missing.is_empty() {
        bail!(
            "no {} reviews found in {}: expected files like aclImdb/{}/pos/0_9.txt (the layout of \
             aclImdb_v1.tar.gz); point --data at the archive or the aclImdb folder",
            missing.join(" or "),
            path.display(),
            missing[0]
        );
    }
    // Reviews without a single letter or digit give the model nothing to learn from: a data set
    // of only those is damaged (or a wrong file), and training on it would succeed uselessly.
    for (name, reviews) in [("train", &data.train), ("test", &data.test)] {
        if !reviews
            .iter()
            .any(|r| r.text.chars().any(char::is_alphanumeric))
        {
            bail!(
                "{}: all {} {name} reviews are empty (no words in any of them); the data is \
                 damaged, get a fresh copy",
                path.display(),
                reviews.len()
            );
        }
    }
    Ok(data)
}

fn push(data: &mut RawDataset, split: Split, label: u8, id: u32, rating: u8, bytes: &[u8]) {
    let review = Review {
        id,
        rating,
        label,
        text: String::from_utf8_lossy(bytes).into_owned(),
    };
    match split {
        Split::Train => data.train.push(review),
        Split::Test => data.test.push(review),
    }
}

/// Reads a `.tar.gz` file in one streaming pass.
fn load_archive(path: &Path) -> Result<RawDataset> {
    let file = fs::File::open(path)
        .with_context(|| format!("cannot open the data archive {}", path.display()))?;
    read_archive(io::BufReader::with_capacity(1 << 20, file), path)
}

/// Reads the labelled reviews from `.tar.gz` bytes in one streaming pass, never unpacking
/// anything to disk; `path` only names the archive in errors. Only regular files are read:
/// symlinks, hard links, devices and folders are ignored, so an entry can never point elsewhere.
/// Never panics, whatever the bytes (it is fuzzed).
pub fn read_archive(reader: impl Read, path: &Path) -> Result<RawDataset> {
    read_archive_limited(reader, path, LIMITS)
}

fn read_archive_limited(mut reader: impl Read, path: &Path, limits: Limits) -> Result<RawDataset> {
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut reader, &mut magic)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if got < 2 || magic != [0x1f, 0x8b] {
        bail!(
            "{} is not a gzip file: --data expects the aclImdb .tar.gz archive or an aclImdb folder",
            path.display()
        );
    }
    let gz = flate2::read::GzDecoder::new(io::Cursor::new(magic).chain(reader));
    let mut archive = tar::Archive::new(gz);
    // The tar crate quotes the damaged header bytes in its errors; keep the line one line.
    let corrupt = |e: io::Error| {
        anyhow!(
            "{} is corrupt or truncated (reading it as .tar.gz failed: {}); download it again",
            path.display(),
            one_line(&e.to_string())
        )
    };
    let mut data = RawDataset::default();
    let mut buf = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let entry_path = entry.path().map_err(corrupt)?.into_owned();
        // Lossy, so a non-UTF-8 folder is not silently dropped from the path (which would shift a
        // file in `pos/<bad>/` into `pos/`), and a non-UTF-8 name in a review folder is reported.
        let comps: Vec<String> = entry_path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [.., split, label, name] = comps.as_slice() else {
            continue;
        };
        let shown = || format!("{} (in {})", entry_path.display(), path.display());
        let Some((split, label, id, rating)) = classify(split, label, name, &shown)? else {
            continue;
        };
        read_review(&mut entry, &mut buf, &mut total, limits, &shown)?.map_err(corrupt)?;
        push(&mut data, split, label, id, rating, &buf);
    }
    // Read to the end so the gzip trailer (CRC, length) is checked too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(corrupt)?;
    finish(data, path)
}

/// `s` with control characters escaped and cut to 120 chars, fit for a one-line error.
fn one_line(s: &str) -> String {
    let mut out: String = s.chars().take(120).flat_map(char::escape_debug).collect();
    if s.chars().nth(120).is_some() {
        out.push_str("...");
    }
    out
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a folder: `aclImdb` itself (holding train/ and test/) or a folder holding `aclImdb/`.
fn load_folder(path: &Path) -> Result<RawDataset> {
    let root: PathBuf = if path.join("train").is_dir() || path.join("test").is_dir() {
        path.to_path_buf()
    } else if path.join("aclImdb").is_dir() {
        path.join("aclImdb")
    } else {
        bail!(
            "{} holds neither train/ and test/ nor aclImdb/: point --data at the aclImdb folder, \
             the folder holding it, or the .tar.gz archive",
            path.display()
        );
    };
    let mut data = RawDataset::default();
    let (mut buf, mut total) = (Vec::new(), 0u64);
    for split in ["train", "test"] {
        for label in ["pos", "neg"] {
            let dir = root.join(split).join(label);
            if !dir.is_dir() {
                continue; // finish() reports a split with no reviews at all.
            }
            let rd = fs::read_dir(&dir)
                .with_context(|| format!("cannot list the review folder {}", dir.display()))?;
            for ent in rd {
                let ent = ent.with_context(|| format!("cannot list {}", dir.display()))?;
                let file_path = ent.path();
                let ft = ent
                    .file_type()
                    .with_context(|| format!("cannot stat {}", file_path.display()))?;
                if ft.is_dir() {
                    continue;
                }
                let name = ent.file_name();
                let name = name.to_str().ok_or_else(|| {
                    anyhow!(
                        "unexpected file {} in a review folder: the name is not UTF-8",
                        file_path.display()
                    )
                })?;
                let shown = || file_path.display().to_string();
                let Some((sp, lb, id, rating)) = classify(split, label, name, &shown)? else {
                    continue;
                };
                // Follows a symlink (a data folder may be assembled from links), but reads only
                // a regular file: a FIFO would block forever and /dev/zero never end.
                let md = fs::metadata(&file_path)
                    .with_context(|| format!("cannot read the review {}", file_path.display()))?;
                if !md.is_file() {
                    bail!(
                        "the review {} is not a regular file (a device, pipe or socket, or a link \
                         to one); remove it or fix the data",
                        file_path.display()
                    );
                }
                let file = fs::File::open(&file_path)
                    .with_context(|| format!("cannot read the review {}", file_path.display()))?;
                read_review(file, &mut buf, &mut total, LIMITS, &shown)?
                    .with_context(|| format!("cannot read the review {}", file_path.display()))?;
                push(&mut data, sp, lb, id, rating, &buf);
            }
        }
    }
    finish(data, path)
}

/// Loads the labelled reviews from `path`: a folder in the aclImdb layout (the folder `aclImdb`
/// itself or one containing it) or a `.tar.gz` read directly. Review files are
/// `{train,test}/{pos,neg}/ID_RATING.txt`; everything else (train/unsup, *.feat, urls_*.txt,
/// imdb.vocab, README) is ignored. Each split is sorted by (label, numeric id).
pub fn load_reviews(path: &Path) -> Result<RawDataset> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "data path {} does not exist or cannot be read: pass --data with the aclImdb .tar.gz \
             or folder, or set IMDB_LSTM_DATA",
            path.display()
        )
    })?;
    if meta.is_dir() {
        load_folder(path)
    } else {
        load_archive(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("0_9.txt"), Some((0, 9)));
        assert_eq!(parse_name("12499_10.txt"), Some((12499, 10)));
        assert_eq!(parse_name("1_0.txt"), None);
        assert_eq!(parse_name("1_11.txt"), None);
        assert_eq!(parse_name("a_1.txt"), None);
        assert_eq!(parse_name("1_1.feat"), None);
        assert_eq!(parse_name("_1.txt"), None);
        assert_eq!(parse_name("+1_1.txt"), None);
    }

    /// The total limit (2 GiB in use, too big to build in a test) with small limits.
    #[test]
    fn size_limits() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        {
            let mut tar = tar::Builder::new(&mut gz);
            for split in ["train", "test"] {
                for (i, label) in ["pos", "neg"].iter().enumerate() {
                    let text = format!("review {i} in {split}");
                    let mut h = tar::Header::new_gnu();
                    h.set_size(text.len() as u64);
                    h.set_cksum();
                    let name = format!("aclImdb/{split}/{label}/{i}_{}.txt", 1 + i * 8);
                    tar.append_data(&mut h, name, text.as_bytes()).unwrap();
                }
            }
            tar.finish().unwrap();
        }
        let bytes = gz.finish().unwrap();
        let p = Path::new("t.tar.gz");
        let ok = Limits {
            review: 100,
            total: 1000,
        };
        assert!(read_archive_limited(&bytes[..], p, ok).is_ok());
        let small_total = Limits {
            review: 100,
            total: 40,
        };
        let e = read_archive_limited(&bytes[..], p, small_total).unwrap_err();
        assert!(e.to_string().contains("add up to more than"), "{e}");
        let small_review = Limits {
            review: 10,
            total: 1000,
        };
        let e = read_archive_limited(&bytes[..], p, small_review).unwrap_err();
        assert!(e.to_string().contains("is larger than"), "{e}");
    }
}
