//! download() and resolve_source() against a tiny HTTP server on 127.0.0.1 started here.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use imdb_lstm::data::download;
use imdb_lstm::data::source::{resolve_source, resolve_source_with, CACHE_FILE, DATA_ENV};
use sha2::{Digest, Sha256};

/// Serialises the tests that change process environment variables.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Reads a request's head (up to the blank line), bounded in time.
fn read_head(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
}

/// Serves `response` (raw bytes, then close) to every connection for up to 10 seconds or
/// `max_conns` connections, whichever comes first. Returns the URL.
fn serve(response: Vec<u8>, max_conns: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        while served < max_conns && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    read_head(&mut s);
                    let _ = s.write_all(&response);
                    let _ = s.flush();
                    served += 1;
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    format!("http://{addr}/data/aclImdb_v1.tar.gz")
}

fn ok_response(body: &[u8], claimed_len: usize) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {claimed_len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn body() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn assert_empty(dir: &Path) {
    let left: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn fail(url: &str, size: Option<u64>, sha256: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.tar.gz");
    let e = download(url, &dest, size, sha256, false).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains(url), "error does not name the URL: {msg}");
    assert_empty(dir.path());
    (msg, dir)
}

#[test]
fn good_file_lands_in_place() {
    let b = body();
    let url = serve(ok_response(&b, b.len()), 4);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub").join("a.tar.gz");
    download(&url, &dest, Some(b.len() as u64), &sha(&b), false).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b);
    // Only the file itself, no temp file.
    let names: Vec<_> = fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn wrong_checksum() {
    let b = body();
    let url = serve(ok_response(&b, b.len()), 4);
    let wrong = sha(b"something else");
    let (msg, _d) = fail(&url, Some(b.len() as u64), &wrong);
    assert!(msg.contains("sha256") && msg.contains(&wrong), "{msg}");
}

#[test]
fn wrong_size() {
    let b = body();
    let url = serve(ok_response(&b, b.len()), 4);
    let (msg, _d) = fail(&url, Some(b.len() as u64 + 1), &sha(&b));
    assert!(msg.contains(&(b.len() + 1).to_string()), "{msg}");
    // Without a Content-Length the size check happens after the transfer.
    let mut resp = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    resp.extend_from_slice(&b);
    let url = serve(resp, 4);
    let (msg, _d) = fail(&url, Some(b.len() as u64 - 1), &sha(&b));
    assert!(msg.contains("bytes"), "{msg}");
}

#[test]
fn truncated_transfer() {
    let b = body();
    // Content-Length larger than what is sent, then the connection closes.
    let url = serve(ok_response(&b, b.len() + 1000), 4);
    let (msg, _d) = fail(&url, None, &sha(&b));
    assert!(msg.contains("broke off"), "{msg}");
}

#[test]
fn http_404() {
    let url = serve(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
            .to_vec(),
        4,
    );
    let (msg, _d) = fail(&url, None, &sha(b""));
    assert!(msg.contains("404"), "{msg}");
}

#[test]
fn failed_download_removes_only_the_folders_it_made() {
    let url = serve(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
            .to_vec(),
        4,
    );
    let dir = tempfile::tempdir().unwrap();
    let fails_into =
        |dest: PathBuf| assert!(download(&url, &dest, None, &sha(b""), false).is_err());
    // The cache folders the download made are removed again...
    fails_into(dir.path().join("cache").join("imdb-lstm").join(CACHE_FILE));
    assert_empty(dir.path());
    // ...but a folder that was there stays, even empty; below it, only what was made goes.
    let mine = dir.path().join("mine");
    fs::create_dir(&mine).unwrap();
    fails_into(mine.join(CACHE_FILE));
    fails_into(mine.join("sub").join(CACHE_FILE));
    assert!(mine.is_dir());
    assert_empty(&mine);
}

#[test]
fn server_not_there() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/aclImdb_v1.tar.gz");
    let (msg, _d) = fail(&url, None, &sha(b""));
    assert!(msg.contains("cannot download"), "{msg}");
}

#[test]
fn resolve_order_flag_env_cache_download() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag.tar.gz");
    let env = dir.path().join("env.tar.gz");
    fs::write(&flag, b"f").unwrap();
    fs::write(&env, b"e").unwrap();
    let cache = dir.path().join("cache");
    let no_net = "http://127.0.0.1:1/never";
    let resolve = |f: Option<&Path>, e: Option<OsString>, url: &str, size, sum: &str| {
        let c = cache.clone();
        resolve_source_with(f, e, move || Ok(c), url, size, sum, false)
    };
    // Flag beats env.
    let got = resolve(Some(&flag), Some(env.clone().into()), no_net, None, "").unwrap();
    assert_eq!(got, flag);
    // Env beats cache; an empty variable counts as unset.
    let got = resolve(None, Some(env.clone().into()), no_net, None, "").unwrap();
    assert_eq!(got, env);
    // Missing paths are errors naming the source.
    let missing = dir.path().join("missing");
    let e = resolve(Some(&missing), None, no_net, None, "").unwrap_err();
    assert!(e.to_string().contains("--data"), "{e}");
    let e = resolve(None, Some(missing.clone().into()), no_net, None, "").unwrap_err();
    assert!(e.to_string().contains(DATA_ENV), "{e}");

    // Nothing cached: downloads into the cache, then the cache is used without the network.
    let b = body();
    let url = serve(ok_response(&b, b.len()), 1);
    let got = resolve(
        None,
        Some(OsString::new()),
        &url,
        Some(b.len() as u64),
        &sha(&b),
    )
    .unwrap();
    assert_eq!(got, cache.join(CACHE_FILE));
    assert_eq!(fs::read(&got).unwrap(), b);
    let got = resolve(None, None, no_net, Some(b.len() as u64), &sha(&b)).unwrap();
    assert_eq!(got, cache.join(CACHE_FILE));
    // A cached file of the wrong size is reported, not used.
    let e = resolve(None, None, no_net, Some(5), &sha(&b)).unwrap_err();
    assert!(e.to_string().contains("delete it"), "{e}");
}

#[test]
fn resolve_source_reads_the_environment() {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag.tar.gz");
    let env = dir.path().join("env.tar.gz");
    fs::write(&flag, b"f").unwrap();
    fs::write(&env, b"e").unwrap();
    let cache_home = dir.path().join("xdg");
    let cached = cache_home.join("imdb-lstm").join(CACHE_FILE);
    fs::create_dir_all(cached.parent().unwrap()).unwrap();
    fs::write(&cached, vec![0u8; imdb_lstm::data::OFFICIAL_SIZE as usize]).unwrap();

    let old_data = std::env::var_os(DATA_ENV);
    let old_xdg = std::env::var_os("XDG_CACHE_HOME");
    std::env::set_var("XDG_CACHE_HOME", &cache_home);
    std::env::set_var(DATA_ENV, &env);
    let r1 = resolve_source(Some(&flag), false);
    let r2 = resolve_source(None, false);
    std::env::remove_var(DATA_ENV);
    let r3 = resolve_source(None, false);
    let r4 = imdb_lstm::data::cache_dir();
    // Restore before asserting so a failure does not leak into other tests.
    match old_data {
        Some(v) => std::env::set_var(DATA_ENV, v),
        None => std::env::remove_var(DATA_ENV),
    }
    match old_xdg {
        Some(v) => std::env::set_var("XDG_CACHE_HOME", v),
        None => std::env::remove_var("XDG_CACHE_HOME"),
    }
    assert_eq!(r1.unwrap(), flag);
    assert_eq!(r2.unwrap(), env);
    assert_eq!(r3.unwrap(), cached);
    assert_eq!(r4.unwrap(), cache_home.join("imdb-lstm"));
}
