//! Fetching the dataset archive over plain HTTP, verified and written atomically.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// The folders a download created (deepest first): on drop, unless `keep` was called, each is
/// removed if it is still empty, so a failed download leaves no empty cache folder behind.
/// `remove_dir` never removes a folder that holds anything.
struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    /// Creates `dir` and any missing parents, remembering which ones were missing (if creating
    /// fails halfway, the guard drops at once and removes what was made).
    fn create(dir: &Path) -> io::Result<Self> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        let created = CreatedDirs(missing);
        fs::create_dir_all(dir)?;
        Ok(created)
    }

    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `url` into `dest` (a file path), with a progress bar on stderr when `show_progress`.
///
/// Streams into a temp file in `dest`'s folder, checks the byte count (against `expected_size` and
/// the server's Content-Length) and the sha256, fsyncs, then renames into place. On any failure the
/// temp file is removed and the error names the URL and what to do.
pub fn download(
    url: &str,
    dest: &Path,
    expected_size: Option<u64>,
    expected_sha256: &str,
    show_progress: bool,
) -> Result<()> {
    let advice = format!(
        "download {url} by hand (e.g. with a browser or curl) and pass its path with --data or \
         IMDB_LSTM_DATA"
    );
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| anyhow!("download destination {} has no file name", dest.display()))?
        .to_string_lossy()
        .into_owned();
    // Declared before the temp file's guard, so dropped after it: the folder is empty by then.
    let mut created = CreatedDirs::create(&dir).map_err(|e| {
        anyhow!(
            "cannot create the folder {} to download into ({e}); {advice}",
            dir.display()
        )
    })?;

    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => bail!(
            "downloading {url} failed: the server answered HTTP {code} {}; {advice}",
            r.status_text()
        ),
        Err(e) => bail!("cannot download {url}: {e}; check the network connection, or {advice}"),
    };
    let content_length: Option<u64> = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    if let (Some(cl), Some(want)) = (content_length, expected_size) {
        if cl != want {
            bail!(
                "downloading {url} failed: the server offers {cl} bytes but {want} are expected; \
                 the URL may serve a different file, {advice}"
            );
        }
    }

    // Dropped (removed) on every early return; renamed into place only once verified.
    let mut tmp =
        crate::atomic::TempFile::create(dest).with_context(|| format!("cannot download {url}"))?;
    let tmp_path = tmp.path().to_path_buf();
    let mut out = io::BufWriter::with_capacity(1 << 20, tmp.file());

    let bar = if show_progress {
        let bar = match content_length.or(expected_size) {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("downloading {file_name}"));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };

    let mut reader = response.into_reader();
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                bail!(
                    "downloading {url} broke off after {total} bytes: {e}; try again, or {advice}"
                );
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).with_context(|| {
            format!(
                "cannot write {} while downloading {url}",
                tmp_path.display()
            )
        })?;
        total += n as u64;
        bar.set_position(total);
    }
    bar.finish_and_clear();

    if let Some(cl) = content_length {
        if total != cl {
            bail!("downloading {url} broke off: got {total} of {cl} bytes; try again, or {advice}");
        }
    }
    if let Some(want) = expected_size {
        if total != want {
            bail!(
                "downloading {url} gave {total} bytes but {want} are expected; the file is \
                 incomplete or different, try again, or {advice}"
            );
        }
    }
    let got = hex(&hasher.finalize());
    if !got.eq_ignore_ascii_case(expected_sha256.trim()) {
        bail!(
            "the file downloaded from {url} has sha256 {got} but {} is expected; it is damaged or \
             a different file, try again, or {advice}",
            expected_sha256.trim()
        );
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| {
            format!(
                "cannot write {} while downloading {url}",
                tmp_path.display()
            )
        })?;
    tmp.commit()?;
    created.keep();
    Ok(())
}
