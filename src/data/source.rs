//! Locating the dataset: flag, environment variable, cache, or a fresh download.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::download::download;

/// Where the official archive is published.
pub const OFFICIAL_URL: &str = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz";
/// Its size in bytes.
pub const OFFICIAL_SIZE: u64 = 84_125_825;
/// Its sha256.
pub const OFFICIAL_SHA256: &str =
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe";
/// The environment variable naming the data path.
pub const DATA_ENV: &str = "IMDB_LSTM_DATA";
/// The archive's file name in the cache.
pub const CACHE_FILE: &str = "aclImdb_v1.tar.gz";

/// The cache folder: `$XDG_CACHE_HOME/imdb-lstm`, falling back to `~/.cache/imdb-lstm`.
pub fn cache_dir() -> Result<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`cache_dir`] from explicit values (XDG says a relative `XDG_CACHE_HOME` is to be ignored).
fn cache_dir_from(xdg: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    if let Some(x) = xdg.filter(|x| !x.is_empty()).map(PathBuf::from) {
        if x.is_absolute() {
            return Ok(x.join("imdb-lstm"));
        }
    }
    match home.filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("imdb-lstm")),
        None => bail!(
            "cannot find a cache folder: neither XDG_CACHE_HOME nor HOME is set; pass --data PATH \
             or set {DATA_ENV}"
        ),
    }
}

/// Finds the data: the `--data` flag; else `$IMDB_LSTM_DATA`; else the official archive in the
/// cache; else downloads it there (progress on stderr when `show_progress`).
pub fn resolve_source(flag: Option<&Path>, show_progress: bool) -> Result<PathBuf> {
    let env = std::env::var_os(DATA_ENV);
    resolve_source_with(
        flag,
        env,
        cache_dir,
        OFFICIAL_URL,
        Some(OFFICIAL_SIZE),
        OFFICIAL_SHA256,
        show_progress,
    )
}

/// [`resolve_source`] with every input explicit (the environment value, the cache folder and the
/// archive to fetch), so the order can be tested and a mirror used.
pub fn resolve_source_with(
    flag: Option<&Path>,
    env: Option<OsString>,
    cache: impl FnOnce() -> Result<PathBuf>,
    url: &str,
    size: Option<u64>,
    sha256: &str,
    show_progress: bool,
) -> Result<PathBuf> {
    if let Some(p) = flag {
        if !p.exists() {
            bail!(
                "--data {}: no such file or folder; give the aclImdb .tar.gz archive or folder",
                p.display()
            );
        }
        return Ok(p.to_path_buf());
    }
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if !p.exists() {
            bail!(
                "{DATA_ENV}={}: no such file or folder; fix or unset the variable",
                p.display()
            );
        }
        return Ok(p);
    }
    let dir = cache()?;
    let cached = dir.join(CACHE_FILE);
    if cached.is_file() {
        // Downloads land atomically and verified, so only a file put there by hand can be off;
        // a size check is cheap and catches the likely damage.
        if let Some(want) = size {
            let len = std::fs::metadata(&cached)
                .with_context(|| format!("cannot read {}", cached.display()))?
                .len();
            if len != want {
                bail!(
                    "the cached archive {} has {len} bytes, not {want}; delete it to download it \
                     again",
                    cached.display()
                );
            }
        }
        return Ok(cached);
    }
    if show_progress {
        eprintln!(
            "imdb-lstm: downloading the dataset from {url} to {}",
            cached.display()
        );
    }
    download(url, &cached, size, sha256, show_progress)?;
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_rules() {
        let d = cache_dir_from(Some("/x/cache".into()), Some("/home/u".into())).unwrap();
        assert_eq!(d, PathBuf::from("/x/cache/imdb-lstm"));
        let d = cache_dir_from(Some("".into()), Some("/home/u".into())).unwrap();
        assert_eq!(d, PathBuf::from("/home/u/.cache/imdb-lstm"));
        let d = cache_dir_from(Some("rel".into()), Some("/home/u".into())).unwrap();
        assert_eq!(d, PathBuf::from("/home/u/.cache/imdb-lstm"));
        assert!(cache_dir_from(None, None).is_err());
    }
}
