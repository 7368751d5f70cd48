//! The user's own labelled text (data::labelled): each format with its awkward parts, each refusal
//! as its exact one line, the label set, the stratified split, and the two real sets in
//! ../shared/data (skipped with a note when absent).

use std::path::{Path, PathBuf};

use imdb_lstm::data::labelled::{
    read_labelled, records, stratified_split, Format, LabelLists, Labelled, Place, ReadOptions,
    TaskKind,
};

/// Writes `bytes` to `dir/name` (making folders) and returns the path.
fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Reads `path` as training data, keeping the texts.
fn train(path: &Path) -> anyhow::Result<Labelled<String>> {
    read_labelled(path, &ReadOptions::default(), None, |t| t)
}

/// The label names of each record, in order.
fn label_names(d: &Labelled<String>) -> Vec<Vec<String>> {
    (0..d.labels.len())
        .map(|i| {
            d.labels
                .get(i)
                .iter()
                .map(|&id| d.label_set.names()[id as usize].clone())
                .collect()
        })
        .collect()
}

/// The error of `r` as the CLI prints it (`{e:#}`), checked to be one line, with `dir` shown as
/// `…`. Printed, for the README's table.
fn error_line<T>(r: anyhow::Result<T>, dir: &Path) -> String {
    let e = match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    };
    assert!(!e.contains('\n'), "not one line: {e:?}");
    let line = e.replace(&dir.display().to_string(), "…");
    eprintln!("error: {line}");
    line
}

#[test]
fn csv_quotes_bom_crlf_and_other_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "d.csv",
        "\u{feff}id,text,label\r\n\
         1,\"Great, really \"\"great\"\"\r\nfilm\",pos\r\n\
         2,plain bad film, neg \r\n\
         3,\"ok\",pos\r\n",
    );
    assert_eq!(Format::detect(&p).unwrap(), Format::Csv);
    let recs: Vec<_> = records(&p, &ReadOptions::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(recs[0].text, "Great, really \"great\"\r\nfilm");
    assert_eq!(recs[1].text, "plain bad film");
    assert_eq!(recs[1].labels, ["neg"]);
    let lines: Vec<_> = recs.iter().map(|r| r.place.line).collect();
    assert_eq!(lines, [Some(2), Some(4), Some(5)]);
    assert_eq!(
        recs[2].place.to_string(),
        format!("{}, line 5", p.display())
    );
    let d = train(&p).unwrap();
    assert_eq!(d.label_set.names(), ["neg", "pos"]);
    assert_eq!(d.label_set.kind(), TaskKind::Binary);
    assert_eq!(label_names(&d), [["pos"], ["neg"], ["pos"]]);
}

#[test]
fn csv_bytes_that_are_not_utf8_are_decoded_lossily() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "d.csv",
        b"text,label\ncaf\xe9 ok,pos\nfine,n\xffeg\n".as_slice(),
    );
    let d = train(&p).unwrap();
    assert_eq!(d.items, ["caf\u{fffd} ok", "fine"]);
    assert_eq!(d.label_set.names(), ["n\u{fffd}eg", "pos"]);
}

#[test]
fn csv_columns_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "d.csv",
        "sentiment,review\n1,good\n0,bad\n2,meh\n10,wow\n",
    );
    let opts = ReadOptions {
        text_column: "review".into(),
        label_column: "sentiment".into(),
        ..ReadOptions::default()
    };
    let d = read_labelled(&p, &opts, None, |t| t).unwrap();
    assert_eq!(d.items, ["good", "bad", "meh", "wow"]);
    // Integer labels sort as numbers, so 2 comes before 10.
    assert_eq!(d.label_set.names(), ["0", "1", "2", "10"]);
    assert_eq!(d.label_set.kind(), TaskKind::MultiClass);
    let e = error_line(train(&p), tmp.path());
    assert_eq!(
        e,
        "…/d.csv has no column \"text\" (its columns: \"sentiment\", \"review\"); name the right \
         one with --text-column"
    );
    let opts = ReadOptions {
        text_column: "review".into(),
        label_column: "Sentiment".into(),
        ..ReadOptions::default()
    };
    let e = error_line(read_labelled(&p, &opts, None, |t| t), tmp.path());
    assert_eq!(
        e,
        "…/d.csv has no column \"Sentiment\" (its columns: \"sentiment\", \"review\"); name the \
         right one with --label-column"
    );
}

#[test]
fn csv_ragged_row_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "d.csv",
        "text,label,source\na,pos,x\n\"two\nlines\",neg,y\nshort,pos\n",
    );
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/d.csv, line 5: 2 fields, but the header has 3; fix the row (a field holding the \
         separator, a quote or a line break must be in double quotes)"
    );
    let p = write(tmp.path(), "c.csv", "text,label\r\n\"a\r\nb\",pos\r\nc\r\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/c.csv, line 4: 1 field, but the header has 2; fix the row (a field holding the \
         separator, a quote or a line break must be in double quotes)"
    );
    let p = write(tmp.path(), "e.csv", "text,label\nhello, world,pos\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/e.csv, line 2: 3 fields, but the header has 2; fix the row (a field holding the \
         separator, a quote or a line break must be in double quotes)"
    );
}

#[test]
fn csv_that_is_really_tsv_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "data.csv", "text\tlabel\ngood\tpos\nbad\tneg\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/data.csv looks tab-separated: use --format tsv"
    );
    let opts = ReadOptions {
        format: Some(Format::Tsv),
        ..ReadOptions::default()
    };
    let d = read_labelled(&p, &opts, None, |t| t).unwrap();
    assert_eq!(d.items, ["good", "bad"]);
    let p = write(tmp.path(), "data.tsv", "text,label\ngood,pos\nbad,neg\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/data.tsv looks comma-separated: use --format csv"
    );
}

#[test]
fn tsv_with_quoted_tabs_and_crlf() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "d.tsv",
        "label\ttext\r\npos\t\"a\ttab, and a comma\"\r\nneg\tsaid \"no\"\r\n",
    );
    let d = train(&p).unwrap();
    assert_eq!(d.items, ["a\ttab, and a comma", "said \"no\""]);
    assert_eq!(label_names(&d), [["pos"], ["neg"]]);
}

#[test]
fn rows_without_text_or_label() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "d.csv", "text,label\ngood,pos\n\"  \",neg\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/d.csv, line 3: no text (the \"text\" column is empty); fill it in or remove the record"
    );
    let p = write(tmp.path(), "e.csv", "text,label\ngood,pos\nbad,\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/e.csv, line 3: no label (the \"label\" column is empty); fill it in or remove the \
         record"
    );
    let p = write(
        tmp.path(),
        "f.jsonl",
        "{\"text\": \"good\", \"label\": \"pos\"}\n{\"text\": \"\", \"label\": \"neg\"}\n",
    );
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/f.jsonl, line 2: no text (the \"text\" field is empty); fill it in or remove the \
         record"
    );
    let p = write(
        tmp.path(),
        "g.jsonl",
        "{\"text\": \"good\", \"label\": null}\n",
    );
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/g.jsonl, line 1: no label (the \"label\" field is empty); fill it in or remove the \
         record"
    );
}

#[test]
fn empty_files() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, body, want) in [
        (
            "a.csv",
            "",
            "…/a.csv is empty: a CSV file needs a header row naming its columns (like \
             text,label) and one row per text",
        ),
        (
            "b.csv",
            "text,label\r\n",
            "…/b.csv is empty: it holds no labelled records",
        ),
        (
            "c.jsonl",
            "\n  \n",
            "…/c.jsonl is empty: it holds no labelled records",
        ),
    ] {
        let p = write(tmp.path(), name, body);
        assert_eq!(error_line(train(&p), tmp.path()), want);
    }
}

#[test]
fn jsonl_labels_as_strings_integers_booleans() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(
        tmp.path(),
        "d.jsonl",
        "\u{feff}{\"text\": \"good\", \"label\": 1, \"id\": 7}\r\n\
         \r\n\
         {\"label\": 0, \"text\": \"bad \\\"film\\\"\\nreally\"}\n\
         \n",
    );
    assert_eq!(Format::detect(&p).unwrap(), Format::Jsonl);
    let d = train(&p).unwrap();
    assert_eq!(d.items, ["good", "bad \"film\"\nreally"]);
    assert_eq!(d.label_set.names(), ["0", "1"]);
    assert_eq!(label_names(&d), [["1"], ["0"]]);
    let places: Vec<_> = records(&p, &ReadOptions::default())
        .unwrap()
        .map(|r| r.unwrap().place.line)
        .collect();
    assert_eq!(places, [Some(1), Some(3)]);

    let p = write(
        tmp.path(),
        "b.ndjson",
        "{\"text\": \"yes\", \"label\": true}\n{\"text\": \"no\", \"label\": false}\n",
    );
    assert_eq!(Format::detect(&p).unwrap(), Format::Jsonl);
    let d = train(&p).unwrap();
    assert_eq!(d.label_set.names(), ["false", "true"]);
    assert_eq!(label_names(&d), [["true"], ["false"]]);

    // A list of labels makes the record multi-label.
    let p = write(
        tmp.path(),
        "m.jsonl",
        "{\"text\": \"a\", \"label\": [\"x\", 2, \"x\"]}\n{\"text\": \"b\", \"label\": \"x\"}\n",
    );
    let d = train(&p).unwrap();
    assert_eq!(d.label_set.kind(), TaskKind::MultiLabel);
    assert_eq!(d.label_set.names(), ["2", "x"]);
    assert_eq!(label_names(&d), vec![vec!["2", "x"], vec!["x"]]);
}

#[test]
fn jsonl_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = "{\"text\": \"good\", \"label\": \"pos\"}\n";
    for (body, want) in [
        (
            "[1, 2]",
            "…/d.jsonl, line 2: an array, not an object; each line must be one object, like \
             {\"text\": \"...\", \"label\": \"...\"}",
        ),
        (
            "{\"text\": \"x\", \"sentiment\": \"neg\", \"id\": 3}",
            "…/d.jsonl, line 2: no \"label\" field (it has: \"id\", \"sentiment\"); name the right \
             one with --label-column",
        ),
        (
            "{\"text\": \"x\", \"label\": \"neg\"",
            "…/d.jsonl, line 2: not valid JSON (EOF while parsing an object); each line must be \
             one object, like {\"text\": \"...\", \"label\": \"...\"}",
        ),
        (
            "{\"text\": x}",
            "…/d.jsonl, line 2: not valid JSON (expected value at column 10); each line must be \
             one object, like {\"text\": \"...\", \"label\": \"...\"}",
        ),
        (
            "{\"text\": \"x\", \"label\": 0.5}",
            "…/d.jsonl, line 2: the label 0.5 is a fraction; labels are names, whole numbers or \
             true/false",
        ),
        (
            "{\"text\": 5, \"label\": \"neg\"}",
            "…/d.jsonl, line 2: the \"text\" field is a number, not a string",
        ),
    ] {
        let p = write(tmp.path(), "d.jsonl", format!("{ok}{body}\n"));
        assert_eq!(error_line(train(&p), tmp.path()), want);
    }
}

#[test]
fn fasttext_several_labels_and_detection() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "\n__label__sports __label__news Big  win\ttoday\r\n\
                __label__news Rain again\n\
                __label__tech New chip __label__news\n";
    let p = write(tmp.path(), "d.txt", body);
    assert_eq!(Format::detect(&p).unwrap(), Format::FastText);
    // fastText files have no fixed extension.
    let q = write(tmp.path(), "cooking.train", body);
    assert_eq!(Format::detect(&q).unwrap(), Format::FastText);
    let d = train(&p).unwrap();
    assert_eq!(d.items, ["Big win today", "Rain again", "New chip"]);
    assert_eq!(d.label_set.names(), ["news", "sports", "tech"]);
    assert_eq!(d.label_set.kind(), TaskKind::MultiLabel);
    assert_eq!(
        label_names(&d),
        vec![vec!["news", "sports"], vec!["news"], vec!["news", "tech"]]
    );

    let opts = ReadOptions {
        format: Some(Format::FastText),
        ..ReadOptions::default()
    };
    let p = write(tmp.path(), "e.txt", "__label__a good\nno label here\n");
    assert_eq!(
        error_line(read_labelled(&p, &opts, None, |t| t), tmp.path()),
        "…/e.txt, line 2: no __label__NAME on this line; fastText lines are __label__NAME then \
         the text"
    );
    let p = write(tmp.path(), "f.txt", "__label__a good\n__label__b\n");
    assert_eq!(
        error_line(read_labelled(&p, &opts, None, |t| t), tmp.path()),
        "…/f.txt, line 2: no text (only __label__ words on the line); fill it in or remove the \
         record"
    );
}

#[test]
fn class_folders_nested_sorted_txt_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    write(&root, "pos/b.txt", "second good");
    write(&root, "pos/a.txt", "first good");
    write(&root, "pos/deeper/more/c.TXT", "nested good");
    write(&root, "pos/notes.md", "not a text");
    write(&root, "pos/.hidden.txt", "litter");
    write(&root, "neg/z.txt", b"bad \xff bytes".as_slice());
    write(&root, "neg/img.png", "png");
    write(&root, "README.txt", "files in the root are not texts");
    assert_eq!(Format::detect(&root).unwrap(), Format::Folders);
    let recs: Vec<_> = records(&root, &ReadOptions::default())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| (r.labels[0].as_str(), r.text.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("neg", "bad \u{fffd} bytes"),
            ("pos", "first good"),
            ("pos", "second good"),
            ("pos", "nested good"),
        ]
    );
    assert_eq!(
        recs[3].place,
        Place {
            file: root.join("pos/deeper/more/c.TXT"),
            line: None
        }
    );
    let d = train(&root).unwrap();
    assert_eq!(d.label_set.names(), ["neg", "pos"]);

    write(&root, "unsup/readme.md", "no texts");
    assert_eq!(
        error_line(train(&root), tmp.path()),
        "the class folder …/data/unsup holds no .txt files; put that label's texts in it as .txt \
         files, or remove the folder"
    );
    let flat = tmp.path().join("flat");
    write(&flat, "a.txt", "no class folders");
    assert_eq!(
        error_line(train(&flat), tmp.path()),
        "…/flat holds no class folders: a folder of labelled text has one subfolder per label, \
         each holding .txt files (like pos/1.txt, neg/2.txt)"
    );
    let empty = tmp.path().join("e");
    write(&empty, "pos/a.txt", "good");
    write(&empty, "neg/b.txt", " \n");
    assert_eq!(
        error_line(train(&empty), tmp.path()),
        "…/e/neg/b.txt: no text (the file holds no text); fill it in or remove the record"
    );
}

#[cfg(unix)]
#[test]
fn only_regular_files_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.csv");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let want = "…/pipe.csv is not a regular file (a device, pipe or socket, or a link to one); \
                give a file of labelled text";
    assert_eq!(error_line(train(&fifo), tmp.path()), want);
    let opts = ReadOptions {
        format: Some(Format::Csv),
        ..ReadOptions::default()
    };
    let r = read_labelled(&fifo, &opts, None, |t| t);
    assert_eq!(error_line(r, tmp.path()), want);

    let root = tmp.path().join("classes");
    write(&root, "pos/a.txt", "good");
    write(&root, "neg/a.txt", "bad");
    std::os::unix::fs::symlink("/dev/zero", root.join("neg/zero.txt")).unwrap();
    // A link to a folder below a class folder is not followed (no loops).
    std::os::unix::fs::symlink(&root, root.join("pos/loop.txt")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("pos/loop")).unwrap();
    assert_eq!(
        error_line(train(&root), tmp.path()),
        "…/classes/neg/zero.txt is not a regular file (a device, pipe or socket, or a link to \
         one); give a file of labelled text"
    );
}

#[test]
fn detection_and_forced_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "notes.txt", "just some words\n__label__x no\n");
    assert_eq!(
        error_line(Format::detect(&p), tmp.path()),
        "…/notes.txt is in none of the formats imdb-lstm reads (.csv, .tsv, .jsonl, fastText \
         lines starting with __label__, a folder of class folders, or the aclImdb archive); \
         rename it or pass --format"
    );
    let p = write(tmp.path(), "data.bin", [0x1f, 0x8b, 8, 0]);
    assert_eq!(Format::detect(&p).unwrap(), Format::AclImdb);
    let p = write(tmp.path(), "aclImdb_v1.tar.gz", "x");
    assert_eq!(Format::detect(&p).unwrap(), Format::AclImdb);
    write(tmp.path(), "imdb/aclImdb/train/pos/0_9.txt", "x");
    assert_eq!(
        Format::detect(&tmp.path().join("imdb")).unwrap(),
        Format::AclImdb
    );
    write(tmp.path(), "acl/train/neg/0_1.txt", "x");
    assert_eq!(
        Format::detect(&tmp.path().join("acl")).unwrap(),
        Format::AclImdb
    );
    assert_eq!(
        error_line(Format::detect(&tmp.path().join("gone.csv")), tmp.path()),
        "…/gone.csv: no such file or folder, or it cannot be read; give a file or folder of \
         labelled text: No such file or directory (os error 2)"
    );
    let opts = ReadOptions {
        format: Some(Format::Csv),
        ..ReadOptions::default()
    };
    assert_eq!(
        error_line(
            read_labelled(&tmp.path().join("acl"), &opts, None, |t| t),
            tmp.path()
        ),
        "…/acl is a folder, but --format csv reads a file"
    );
}

#[test]
fn label_set_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "one.csv", "text,label\na,pos\nb,pos\n");
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/one.csv: every record has the label \"pos\"; a classifier needs at least two labels \
         (check --label-column and the data)"
    );

    let tr = write(tmp.path(), "train.csv", "text,label\na,neg\nb,pos\nc,pos\n");
    let te = write(tmp.path(), "test.csv", "text,label\nx,pos\ny,Pos\n");
    let d = train(&tr).unwrap();
    assert_eq!(d.label_set.index("pos"), Some(1));
    assert_eq!(
        error_line(
            read_labelled(&te, &ReadOptions::default(), Some(&d.label_set), |t| t),
            tmp.path()
        ),
        "…/test.csv, line 3: the label \"Pos\" is not in the training data (its labels: \"neg\", \
         \"pos\"); fix the label, or add examples of it to the training data"
    );
    let te = write(tmp.path(), "test2.csv", "text,label\nx,pos\ny,neg\n");
    let t = read_labelled(&te, &ReadOptions::default(), Some(&d.label_set), |t| t).unwrap();
    assert_eq!(t.label_set, d.label_set);
    assert_eq!(label_names(&t), [["pos"], ["neg"]]);

    let ft_train = write(tmp.path(), "a.txt", "__label__x one\n__label__y two\n");
    let ft_test = write(tmp.path(), "b.txt", "__label__x __label__y both\n");
    let d = train(&ft_train).unwrap();
    assert_eq!(
        error_line(
            read_labelled(&ft_test, &ReadOptions::default(), Some(&d.label_set), |t| t),
            tmp.path()
        ),
        "…/b.txt, line 1: several labels (\"x\", \"y\"), but the training data has one per record"
    );
}

#[test]
fn too_many_labels_looks_like_the_wrong_column() {
    let tmp = tempfile::tempdir().unwrap();
    let mut body = String::from("label,text\n");
    for i in 0..1834 {
        body.push_str(&format!("review {i},id{i}\n"));
    }
    let p = write(tmp.path(), "d.csv", &body);
    assert_eq!(
        error_line(train(&p), tmp.path()),
        "…/d.csv has 1834 distinct labels; that looks like the wrong column: check \
         --label-column, or raise --max-labels (now 1000)"
    );
    let opts = ReadOptions {
        max_labels: 2000,
        ..ReadOptions::default()
    };
    let d = read_labelled(&p, &opts, None, |t| t).unwrap();
    assert_eq!(d.label_set.names().len(), 1834);
}

#[test]
fn a_record_is_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ReadOptions {
        max_record_bytes: 1 << 20,
        ..ReadOptions::default()
    };
    let big = "word ".repeat(300_000);
    let p = write(
        tmp.path(),
        "d.csv",
        format!("text,label\nfine,pos\n\"{big},neg\n"),
    );
    assert_eq!(
        error_line(read_labelled(&p, &opts, None, |t| t), tmp.path()),
        "…/d.csv, line 3: a record longer than 1 MiB; this is not text to learn from (or the file \
         is damaged, e.g. a quote never closed)"
    );
    let p = write(
        tmp.path(),
        "d.jsonl",
        format!("{{\"text\": \"ok\", \"label\": 1}}\n{{\"text\": \"{big}\", \"label\": 0}}\n"),
    );
    assert_eq!(
        error_line(read_labelled(&p, &opts, None, |t| t), tmp.path()),
        "…/d.jsonl, line 2: a record longer than 1 MiB; this is not text to learn from (or the \
         file is damaged, e.g. a quote never closed)"
    );
    let root = tmp.path().join("f");
    write(&root, "a/x.txt", "ok");
    write(&root, "b/x.txt", &big);
    assert_eq!(
        error_line(read_labelled(&root, &opts, None, |t| t), tmp.path()),
        "…/f/b/x.txt: a record longer than 1 MiB; this is not text to learn from (or the file is \
         damaged, e.g. a quote never closed)"
    );
    // Under the cap, the same text reads.
    let opts = ReadOptions {
        max_record_bytes: 2 << 20,
        ..ReadOptions::default()
    };
    assert_eq!(
        read_labelled(&root, &opts, None, |t| t.len())
            .unwrap()
            .items,
        [2, big.len()]
    );
}

/// Label lists with `counts[k]` records of label k, interleaved.
fn lists(counts: &[usize]) -> LabelLists {
    let mut body = String::from("text,label\n");
    let mut left = counts.to_vec();
    let mut i = 0;
    while left.iter().any(|&n| n > 0) {
        for (k, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                body.push_str(&format!("t{i},L{k}\n"));
                i += 1;
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = write(tmp.path(), "d.csv", body);
    train(&p).unwrap().labels
}

#[test]
fn stratified_split_keeps_shares_and_is_seeded() {
    let labels = lists(&[500, 100, 20]);
    let (kept, held) = stratified_split(&labels, 0.2, 7).unwrap();
    assert_eq!(kept.len() + held.len(), 620);
    let count = |idx: &[usize], k: u32| idx.iter().filter(|&&i| labels.get(i) == [k]).count();
    assert_eq!(
        [count(&held, 0), count(&held, 1), count(&held, 2)],
        [100, 20, 4]
    );
    assert_eq!(
        [count(&kept, 0), count(&kept, 1), count(&kept, 2)],
        [400, 80, 16]
    );
    let mut all: Vec<usize> = kept.iter().chain(&held).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..620).collect::<Vec<_>>());
    assert!(held.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        stratified_split(&labels, 0.2, 7).unwrap(),
        (kept, held.clone())
    );
    assert_ne!(stratified_split(&labels, 0.2, 8).unwrap().1, held);

    let tiny = lists(&[1, 1]);
    assert_eq!(
        error_line(stratified_split(&tiny, 0.2, 1), Path::new("/nowhere")),
        "--validation-split 0.2 of 2 records leaves the validation part empty; raise it, or add \
         data"
    );
    assert_eq!(
        error_line(stratified_split(&tiny, 1.5, 1), Path::new("/nowhere")),
        "--validation-split 1.5: give a fraction between 0 and 1, like 0.2"
    );
}

/// `../shared/data/NAME`, or `None` with a visible note.
fn shared(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "note: {} is absent: skipping this real-data test",
            p.display()
        );
        None
    }
}

#[test]
fn real_trec_csv() {
    let Some(p) = shared("trec/train.csv") else {
        return;
    };
    let d = read_labelled(&p, &ReadOptions::default(), None, |t| t.len()).unwrap();
    assert_eq!(d.items.len(), 5452);
    assert_eq!(
        d.label_set.names(),
        ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    );
    assert_eq!(d.label_set.kind(), TaskKind::MultiClass);
    let mut counts = [0usize; 6];
    for i in 0..d.labels.len() {
        counts[d.labels.get(i)[0] as usize] += 1;
    }
    assert_eq!(counts, [86, 1162, 1250, 1223, 835, 896]);
    let test = shared("trec/test.csv").unwrap();
    let t = read_labelled(&test, &ReadOptions::default(), Some(&d.label_set), |t| t).unwrap();
    assert_eq!(t.items.len(), 500);
}

#[test]
fn real_sst1_jsonl() {
    let Some(p) = shared("sst1/train.jsonl") else {
        return;
    };
    let d = read_labelled(&p, &ReadOptions::default(), None, |t| t).unwrap();
    assert_eq!(d.items.len(), 8544);
    assert_eq!(d.label_set.names().len(), 5);
    assert_eq!(d.label_set.kind(), TaskKind::MultiClass);
    assert!(d.label_set.index("very positive").is_some());
    assert!(d.items[0].starts_with("a stirring , funny"));
    for split in ["dev", "test"] {
        let q = shared(&format!("sst1/{split}.jsonl")).unwrap();
        read_labelled(&q, &ReadOptions::default(), Some(&d.label_set), |t| t).unwrap();
    }
}
