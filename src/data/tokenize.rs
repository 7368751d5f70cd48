//! The word tokeniser shared by training and `predict`.
//!
//! The rule is fixed and versioned ([`TOKENIZER_NAME`], [`TOKENIZER_VERSION`]) because a model's
//! ids only mean something under the exact rule it was trained with.

/// Name recorded in `Preprocessing::tokenizer` for this rule.
pub const TOKENIZER_NAME: &str = "imdb-lstm-words";
/// Version recorded in `Preprocessing::tokenizer_version`; bump when the rule changes.
pub const TOKENIZER_VERSION: u32 = 1;

/// Length of the `<br ...>` tag starting at `bytes[0]` (`<br />`, `<br/>`, `<br>`, any ASCII case),
/// or `None` when none starts there.
fn br_tag_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 4 || bytes[0] != b'<' || !bytes[1].eq_ignore_ascii_case(&b'b') {
        return None;
    }
    if !bytes[2].eq_ignore_ascii_case(&b'r') {
        return None;
    }
    match &bytes[3..] {
        [b'>', ..] => Some(4),
        [b'/', b'>', ..] => Some(5),
        [b' ', b'/', b'>', ..] => Some(6),
        _ => None,
    }
}

/// `text` with every `<br />`, `<br/>`, `<br>` (any ASCII case) replaced by one space, lowercased
/// with `str::to_lowercase` (which handles context such as the Greek final sigma).
fn normalise(text: &str) -> String {
    let bytes = text.as_bytes();
    let replaced: std::borrow::Cow<str> = if bytes.contains(&b'<') {
        let mut out = String::with_capacity(text.len());
        let mut start = 0; // start of the not-yet-copied part
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'<' {
                if let Some(len) = br_tag_len(&bytes[i..]) {
                    // '<' and the tag are ASCII, so i and i + len are char boundaries.
                    out.push_str(&text[start..i]);
                    out.push(' ');
                    i += len;
                    start = i;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&text[start..]);
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    if replaced.is_ascii() {
        // Fast path: identical to `to_lowercase` on ASCII, without the per-char Unicode work.
        let mut s = replaced.into_owned();
        s.make_ascii_lowercase();
        s
    } else {
        replaced.to_lowercase()
    }
}

fn is_token_char(c: char) -> bool {
    c == '\'' || c.is_alphanumeric()
}

/// Calls `f` on each token of `text`, in order, without allocating per token (one buffer per text).
///
/// The rule: replace `<br />`, `<br/>`, `<br>` (any ASCII case) by a space; lowercase (Unicode);
/// tokens are maximal runs of alphanumeric chars or `'`; leading and trailing `'` are stripped;
/// empty tokens are dropped.
pub fn for_each_token(text: &str, mut f: impl FnMut(&str)) {
    let lower = normalise(text);
    let emit = |run: &str| {
        let tok = run.trim_matches('\'');
        if !tok.is_empty() {
            f(tok);
        }
    };
    if lower.is_ascii() {
        // Fast path, same rule: for ASCII, char::is_alphanumeric is is_ascii_alphanumeric.
        let bytes = lower.as_bytes().iter().enumerate();
        let marks = bytes.map(|(i, &b)| (i, b == b'\'' || b.is_ascii_alphanumeric()));
        for_each_run(&lower, marks, emit);
    } else {
        let chars = lower.char_indices().map(|(i, c)| (i, is_token_char(c)));
        for_each_run(&lower, chars, emit);
    }
}

/// Calls `emit` on each maximal run of `text` whose positions `marks` flags as token characters
/// (`marks` gives each char's byte offset in order).
fn for_each_run(
    text: &str,
    marks: impl Iterator<Item = (usize, bool)>,
    mut emit: impl FnMut(&str),
) {
    let mut run_start: Option<usize> = None;
    for (i, in_token) in marks {
        if in_token {
            run_start.get_or_insert(i);
        } else if let Some(s) = run_start.take() {
            emit(&text[s..i]);
        }
    }
    if let Some(s) = run_start {
        emit(&text[s..]);
    }
}

/// The tokens of `text` as owned strings (see [`for_each_token`] for the rule).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s)
    }

    #[test]
    fn br_variants_and_case() {
        assert_eq!(toks("a<br />b<br/>c<br>d"), ["a", "b", "c", "d"]);
        assert_eq!(toks("a<BR />b<Br/>c<bR>d"), ["a", "b", "c", "d"]);
        // Not a br tag: the letters survive as a token.
        assert_eq!(toks("a<bra>b"), ["a", "bra", "b"]);
        assert_eq!(toks("x<br  />y"), ["x", "br", "y"]);
        assert_eq!(toks("end<br"), ["end", "br"]);
        assert_eq!(toks("<br /><br />"), Vec::<String>::new());
    }

    #[test]
    fn unicode_lowercase() {
        assert_eq!(toks("ÉCOLE"), ["école"]);
        assert_eq!(toks("Straße STRASSE"), ["straße", "strasse"]);
        // str::to_lowercase's final sigma rule.
        assert_eq!(toks("ΟΔΟΣ"), ["οδος"]);
        assert_eq!(toks("日本語 テスト"), ["日本語", "テスト"]);
    }

    #[test]
    fn apostrophes() {
        assert_eq!(toks("'tis"), ["tis"]);
        assert_eq!(toks("don't"), ["don't"]);
        assert_eq!(toks("rock'n'roll"), ["rock'n'roll"]);
        assert_eq!(toks("''"), Vec::<String>::new());
        assert_eq!(toks("'"), Vec::<String>::new());
        assert_eq!(toks("'quoted' words''"), ["quoted", "words"]);
        // A typographic apostrophe is not `'`: it splits.
        assert_eq!(toks("don’t"), ["don", "t"]);
    }

    #[test]
    fn digits_and_punctuation() {
        assert_eq!(toks("A 10/10 movie!"), ["a", "10", "10", "movie"]);
        assert_eq!(
            toks("well-made, (really)... 3.5"),
            ["well", "made", "really", "3", "5"]
        );
        assert_eq!(toks("I LOVED it"), ["i", "loved", "it"]);
        assert_eq!(toks("mr._smith"), ["mr", "smith"]);
    }

    #[test]
    fn empty_and_blank() {
        assert!(toks("").is_empty());
        assert!(toks("   \n\t ").is_empty());
        assert!(toks("?!.,").is_empty());
    }

    #[test]
    fn for_each_token_matches_tokenize() {
        let text = "It's <br />GREAT, isn't it? 'Yes'";
        let mut seen = Vec::new();
        for_each_token(text, |t| seen.push(t.to_string()));
        assert_eq!(seen, tokenize(text));
        assert_eq!(seen, ["it's", "great", "isn't", "it", "yes"]);
    }
}
