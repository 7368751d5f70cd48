//! The Keras-style model summary (`model.summary()` in Keras 3's box-drawing layout), followed by
//! the preprocessing and dropout settings that the Keras table does not show.

use crate::data::{Preprocessing, Side};
use crate::nn::arch::{Arch, LayerSpec};
use anyhow::Result;

/// Minimum inner widths of the three columns, as Keras 3 prints a Sequential model.
const MIN_WIDTHS: [usize; 3] = [33, 24, 15];

/// `1234567` -> `"1,234,567"`, as Keras prints parameter counts.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in Keras 3's `readable_memory_size` style: 1024-based, two decimals ("2.94 MB").
fn readable_bytes(bytes: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    for unit in &units[..units.len() - 1] {
        if size / 1024.0 < 1.0 {
            return format!("{size:.2} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.2} {}", units[units.len() - 1])
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Pre => "pre",
        Side::Post => "post",
    }
}

/// One table line: `left`, then each cell's `fill` run, separated by `mid`, closed by `right`.
fn rule(widths: &[usize; 3], left: char, fill: char, mid: char, right: char) -> String {
    let mut s = String::new();
    s.push(left);
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            s.push(mid);
        }
        s.extend(std::iter::repeat_n(fill, *w));
    }
    s.push(right);
    s
}

/// One table row: the first two cells left-aligned, the parameter count right-aligned (Keras 3).
fn row(widths: &[usize; 3], border: char, cells: [&str; 3]) -> String {
    format!(
        "{border} {:<w0$} {border} {:<w1$} {border} {:>w2$} {border}",
        cells[0],
        cells[1],
        cells[2],
        w0 = widths[0] - 2,
        w1 = widths[1] - 2,
        w2 = widths[2] - 2,
    )
}

/// The Keras-style model summary table, then the preprocessing and dropout settings.
///
/// `vocab_len` is the number of words actually kept, when known (a trained or loaded model);
/// otherwise the maximum num_words allows is shown.
pub fn summary(arch: &Arch, pre: &Preprocessing, vocab_len: Option<usize>) -> Result<String> {
    let layers = arch.describe()?;
    let total: usize = layers.iter().map(|l| l.params).sum();
    let rows: Vec<[String; 3]> = layers
        .iter()
        .map(|l| {
            [
                format!("{} ({})", l.name, l.class_name),
                l.output.to_string(),
                thousands(l.params),
            ]
        })
        .collect();
    let header = ["Layer (type)", "Output Shape", "Param #"];
    // Widen a column when a (non-default) config's text would not fit.
    let mut widths = MIN_WIDTHS;
    for cells in rows
        .iter()
        .map(|r| [r[0].as_str(), r[1].as_str(), r[2].as_str()])
        .chain(std::iter::once(header))
    {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count() + 2);
        }
    }

    let mut lines = vec!["Model: \"sequential\"".to_string()];
    lines.push(rule(&widths, '┏', '━', '┳', '┓'));
    lines.push(row(&widths, '┃', header));
    lines.push(rule(&widths, '┡', '━', '╇', '┩'));
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            lines.push(rule(&widths, '├', '─', '┼', '┤'));
        }
        lines.push(row(&widths, '│', [&r[0], &r[1], &r[2]]));
    }
    lines.push(rule(&widths, '└', '─', '┴', '┘'));
    // f32 weights: 4 bytes per parameter, as Keras reports the size.
    let size = readable_bytes(total.saturating_mul(4));
    lines.push(format!(" Total params: {} ({size})", thousands(total)));
    lines.push(format!(" Trainable params: {} ({size})", thousands(total)));
    lines.push(" Non-trainable params: 0 (0.00 B)".to_string());

    let max_vocab = pre.num_words.saturating_sub(pre.index_from as usize + 1);
    let vocab = match vocab_len {
        Some(0) => "0 words".to_string(),
        Some(n) => {
            let first = pre.index_from as usize + 1;
            format!("{} words (ids {first}..={})", thousands(n), first + n - 1)
        }
        None => format!("not built yet (at most {} words)", thousands(max_vocab)),
    };
    lines.push(String::new());
    lines.push("Preprocessing:".to_string());
    lines.push(format!(
        "  tokenizer:          {} (version {})",
        pre.tokenizer, pre.tokenizer_version
    ));
    lines.push(format!(
        "  num_words:          {}",
        thousands(pre.num_words)
    ));
    lines.push(format!("  maxlen:             {}", pre.maxlen));
    lines.push(format!("  padding:            {}", side(pre.padding)));
    lines.push(format!("  truncating:         {}", side(pre.truncating)));
    lines.push(format!(
        "  ids:                pad {}, start {}, oov {}, index_from {}",
        pre.pad_id, pre.start_id, pre.oov_id, pre.index_from
    ));
    lines.push(format!("  vocabulary:         {vocab}"));
    lines.push(String::new());
    lines.push("Dropout:".to_string());
    // The recurrent layers' dropouts (the Keras table does not show them); a Dropout layer's
    // rate is in its row's name only in Keras too, so it is listed here as well.
    let recurrent = arch
        .layers
        .iter()
        .filter(|l| recurrent_args(l).is_some())
        .count();
    for (layer, info) in arch.layers.iter().zip(&layers) {
        if let Some((class, r)) = recurrent_args(layer) {
            // One recurrent layer (the tutorial's) is named by its class, several by their names.
            let who = if recurrent == 1 {
                class.to_string()
            } else {
                info.name.clone()
            };
            lines.push(format!(
                "  dropout:            {} ({who} inputs)",
                r.dropout
            ));
            lines.push(format!(
                "  recurrent_dropout:  {} ({who} recurrent state)",
                r.recurrent_dropout
            ));
        } else if let LayerSpec::Dropout { rate } = layer {
            lines.push(format!("  rate:               {rate} ({})", info.name));
        }
    }
    if lines.last().is_some_and(|l| l == "Dropout:") {
        lines.push("  none".to_string());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// An LSTM's, GRU's or Bidirectional's recurrent arguments, with the class that has them.
fn recurrent_args(layer: &LayerSpec) -> Option<(&'static str, &crate::nn::arch::Recurrent)> {
    match layer {
        LayerSpec::Bidirectional { layer, .. } => recurrent_args(layer),
        l => l.recurrent().map(|(r, _)| (l.class_name(), r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(129), "129");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(640_000), "640,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn readable_bytes_like_keras() {
        assert_eq!(readable_bytes(0), "0.00 B");
        assert_eq!(readable_bytes(771_713 * 4), "2.94 MB");
        assert_eq!(readable_bytes(2048), "2.00 KB");
    }
}
