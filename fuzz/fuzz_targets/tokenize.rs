//! The tokeniser and encoders on arbitrary text and settings: never a panic, every id below
//! num_words, rows exactly maxlen long, and the kept vocabulary encodes like the full one.
#![no_main]
use imdb_lstm::data::{tokenize, Preprocessing, Side, Vocabulary};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (knobs, rest) = data.split_at(3);
    let text = String::from_utf8_lossy(rest);
    let pre = Preprocessing {
        num_words: 4 + knobs[0] as usize,
        maxlen: 1 + knobs[1] as usize % 64,
        padding: if knobs[2] & 1 == 0 { Side::Pre } else { Side::Post },
        truncating: if knobs[2] & 2 == 0 { Side::Pre } else { Side::Post },
        ..Preprocessing::default()
    };
    let tokens = tokenize(&text);
    for t in &tokens {
        assert!(!t.is_empty() && !t.starts_with('\'') && !t.ends_with('\''), "{t:?}");
    }
    // A vocabulary from the text itself (so words are known) and from its halves.
    let half = text.len() / 2;
    let cut = (0..=half).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let full = Vocabulary::build([&text[..cut], &text[cut..]]);
    let kept = full.kept(&pre);
    let ids = full.encode(&text, &pre);
    assert_eq!(ids.len(), tokens.len() + 1);
    assert_eq!(ids, kept.encode(&text, &pre));
    assert!(ids.iter().all(|&i| (i as usize) < pre.num_words));
    let row = pre.encode_padded(&kept, None, &text);
    assert_eq!(row.len(), pre.maxlen);
    assert!(row.iter().all(|&i| (i as usize) < pre.num_words));
});
