//! The archive reader on arbitrary bytes. Random bytes are almost never gzip, so the first byte
//! picks the mode: odd = the bytes as given (gzip parsing), even = the rest gzipped here (tar
//! parsing, which is where paths, links and sizes live). Never a panic; whatever is accepted
//! holds only well-formed reviews.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 1 {
        rest.to_vec()
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        gz.finish().unwrap()
    };
    if let Ok(d) = imdb_lstm::data::archive::read_archive(&bytes[..], Path::new("fuzz.tar.gz")) {
        assert!(!d.train.is_empty() && !d.test.is_empty());
        for r in d.train.iter().chain(&d.test) {
            assert!((1..=10).contains(&r.rating) && r.label <= 1);
        }
    }
});
