//! The label set of a data set, the records' label ids, and a stratified split.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{listing, records, Format, ReadOptions};

/// The kind of task the labels make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    /// Two labels, one per record.
    Binary,
    /// More than two labels, one per record.
    MultiClass,
    /// Some record has several labels.
    MultiLabel,
}

/// The label names in their fixed order (index = output unit), and the kind of task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
    kind: TaskKind,
    index: HashMap<String, u32>,
}

impl LabelSet {
    /// A label set of `names`, ordered: numerically when every name is an integer (so `2` comes
    /// before `10`), else by bytes; so `neg`/`pos` and `0`/`1` put the positive class second.
    pub fn new(mut names: Vec<String>, multi_label: bool) -> LabelSet {
        let numbers: Option<Vec<i128>> = names.iter().map(|n| n.parse().ok()).collect();
        match numbers {
            Some(_) => names.sort_by_key(|n| n.parse::<i128>().unwrap_or_default()),
            None => names.sort(),
        }
        names.dedup();
        let kind = if multi_label {
            TaskKind::MultiLabel
        } else if names.len() == 2 {
            TaskKind::Binary
        } else {
            TaskKind::MultiClass
        };
        let index = names.iter().zip(0..).map(|(n, i)| (n.clone(), i)).collect();
        LabelSet { names, kind, index }
    }

    /// The names, index = position.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The kind of task.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// The index of `name`.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// A label set in the order `names` give (a model file's labels, in output order).
    pub fn in_order(names: Vec<String>, kind: TaskKind) -> LabelSet {
        let index = names.iter().zip(0..).map(|(n, i)| (n.clone(), i)).collect();
        LabelSet { names, kind, index }
    }

    /// For two labels: the set with `positive` second (the sigmoid's class), and whether the
    /// order changed (ids 0 and 1 swap). `what` names the data in messages.
    pub fn with_positive(&self, positive: &str, what: &str) -> Result<(LabelSet, bool)> {
        if self.kind == TaskKind::MultiLabel {
            bail!(
                "--positive-label {positive:?}: {what} is multi-label data (each of its labels \
                 gets its own yes/no output); --positive-label is for two labels, one per record"
            );
        }
        if self.kind != TaskKind::Binary {
            bail!(
                "--positive-label {positive:?}: {what} has {} labels ({}); --positive-label is \
                 for data with two",
                self.names.len(),
                listing(&self.names)
            );
        }
        match self.index(positive) {
            Some(1) => Ok((self.clone(), false)),
            Some(_) => {
                let names = vec![self.names[1].clone(), self.names[0].clone()];
                Ok((LabelSet::in_order(names, self.kind), true))
            }
            None => bail!(
                "--positive-label {positive:?} is not a label of {what} (its labels: {}); give \
                 one of them",
                listing(&self.names)
            ),
        }
    }
}

/// Each record's label ids, stored flat (one small list per record would cost an allocation each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelLists {
    ids: Vec<u32>,
    ends: Vec<usize>,
}

impl LabelLists {
    /// The number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i`'s label ids, ascending.
    pub fn get(&self, i: usize) -> &[u32] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.ids[start..self.ends[i]]
    }

    fn push(&mut self, ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.ends.push(self.ids.len());
    }
}

/// A data set as the caller keeps it: one item per record (what `keep` made of its text), the
/// records' labels, and the label set.
#[derive(Clone, Debug)]
pub struct Labelled<T> {
    /// What `keep` returned, in record order.
    pub items: Vec<T>,
    /// The label ids of each item.
    pub labels: LabelLists,
    /// The labels.
    pub label_set: LabelSet,
}

/// Reads every record of `path`, keeping `keep(text)` of each, so memory is what `keep` returns
/// (e.g. encoded ids) plus the label ids. Training data (`known` = `None`) makes the label set and
/// must have at least two labels and at most `opts.max_labels`; test data (`known` = the training
/// set) may only use labels training has, in the same task kind. An empty file is refused.
pub fn read_labelled<T>(
    path: &Path,
    opts: &ReadOptions,
    known: Option<&LabelSet>,
    mut keep: impl FnMut(String) -> T,
) -> Result<Labelled<T>> {
    let recs = records(path, opts)?;
    let format = recs.format();
    // Ids in order of first sight while reading; sorted at the end.
    let mut seen: HashMap<String, u32> = known.map(|k| k.index.clone()).unwrap_or_default();
    let mut items = Vec::new();
    let mut labels = LabelLists::default();
    let (mut count, mut multi, mut too_many) = (0u64, false, false);
    let mut ids = Vec::new();
    for rec in recs {
        let rec = rec?;
        count += 1;
        ids.clear();
        for l in &rec.labels {
            let id = match (seen.get(l), known) {
                (Some(&id), _) => id,
                (None, Some(k)) => bail!(
                    "{}: the label {l:?} is not in the training data (its labels: {}); fix the \
                     label, or add examples of it to the training data{}",
                    rec.place,
                    listing(k.names()),
                    match (k.kind, &opts.label_separator) {
                        (TaskKind::MultiLabel, None) =>
                            " (several labels in one value need \
                            --multi-label SEP, as in training)",
                        _ => "",
                    }
                ),
                (None, None) => {
                    let id = seen.len() as u32;
                    seen.insert(l.clone(), id);
                    id
                }
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.len() > 1 {
            multi = true;
            if known.is_some_and(|k| k.kind != TaskKind::MultiLabel) {
                bail!(
                    "{}: several labels ({}), but the training data has one per record",
                    rec.place,
                    listing(&rec.labels)
                );
            }
        }
        // Past the limit, keep counting (the message gives the number) but keep nothing.
        if seen.len() > opts.max_labels && !too_many {
            too_many = true;
            items = Vec::new();
            labels = LabelLists::default();
        }
        if !too_many {
            labels.push(&ids);
            items.push(keep(rec.text));
        }
    }
    if count == 0 {
        bail!("{} is empty: it holds no labelled records", path.display());
    }
    if too_many {
        let hint = match format {
            Format::Csv | Format::Tsv | Format::Jsonl => "check --label-column",
            _ => "check the data",
        };
        bail!(
            "{} has {} distinct labels; that looks like the wrong column: {hint}, or raise \
             --max-labels (now {})",
            path.display(),
            seen.len(),
            opts.max_labels
        );
    }
    let label_set = match known {
        Some(k) => k.clone(),
        None => {
            if seen.len() == 1 {
                bail!(
                    "{}: every record has the label {:?}; a classifier needs at least two \
                     labels (check {}the data)",
                    path.display(),
                    seen.keys().next().map_or("", |s| s.as_str()),
                    match format {
                        Format::Csv | Format::Tsv | Format::Jsonl => "--label-column and ",
                        _ => "",
                    }
                );
            }
            let set = LabelSet::new(seen.keys().cloned().collect(), multi || opts.multi_label);
            let mut to_sorted = vec![0u32; seen.len()];
            for (name, &id) in &seen {
                to_sorted[id as usize] = set.index[name];
            }
            for id in &mut labels.ids {
                *id = to_sorted[*id as usize];
            }
            set
        }
    };
    for i in 0..labels.len() {
        let end = labels.ends[i];
        let start = end - labels.get(i).len();
        labels.ids[start..end].sort_unstable();
    }
    Ok(Labelled {
        items,
        labels,
        label_set,
    })
}

/// Splits record indices into (kept, held out) with `fraction` of each label combination held
/// out, chosen by `seed`: each label keeps its share in both parts. Both lists ascend.
pub fn stratified_split(
    labels: &LabelLists,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("--validation-split {fraction}: give a fraction between 0 and 1, like 0.2");
    }
    let mut groups: BTreeMap<&[u32], Vec<usize>> = BTreeMap::new();
    for i in 0..labels.len() {
        groups.entry(labels.get(i)).or_default().push(i);
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let (mut kept, mut held) = (Vec::new(), Vec::new());
    for group in groups.values_mut() {
        group.shuffle(&mut rng);
        let k = (group.len() as f64 * fraction).round() as usize;
        held.extend_from_slice(&group[..k]);
        kept.extend_from_slice(&group[k..]);
    }
    if kept.is_empty() || held.is_empty() {
        bail!(
            "--validation-split {fraction} of {} records leaves {} empty; {}",
            labels.len(),
            if held.is_empty() {
                "the validation part"
            } else {
                "the training part"
            },
            if held.is_empty() {
                "raise it, or add data"
            } else {
                "lower it, or add data"
            }
        );
    }
    kept.sort_unstable();
    held.sort_unstable();
    Ok((kept, held))
}
