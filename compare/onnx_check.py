# The exported ONNX model against `imdb-lstm predict` on 1,000 IMDB test reviews (not part of
# the build or the tests). The reviews are tokenised in Python from preprocessing.json alone,
# as the exported README.md shows, and run with onnxruntime.
#
# Run (a model file first, e.g. `cargo run --release -- train --out /tmp/exp-model --limit 5000
# --epochs 1`):
#   python -m venv v && v/bin/pip install onnxruntime numpy regex
#   v/bin/python compare/onnx_check.py --model /tmp/exp-model/model.safetensors
# It exports the model (imdb-lstm export --force) into --out, runs both, and prints the largest
# |difference| of the probabilities and the agreement of the labels; it exits 1 unless the
# difference is <= 1e-5 and the labels agree 100 %.
import argparse, json, os, subprocess, sys, tarfile, tempfile
import numpy as np
import onnxruntime as ort
import regex

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True, help="a model file (model.safetensors)")
ap.add_argument("--out", default="/tmp/imdb-lstm-onnx", help="folder for the export")
ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "imdb-lstm"))
ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data",
                                               "aclImdb_v1_labelled.tar.gz"))
ap.add_argument("--n", type=int, default=1000, help="test reviews, half of each class")
args = ap.parse_args()

subprocess.run([args.bin, "export", "--model", args.model, "--format", "onnx",
                "--out", args.out, "--force"], check=True)

# The first n/2 test reviews of each class, by id. A review is one line for `predict --file`:
# line breaks become spaces, for both sides alike.
wanted = {}
with tarfile.open(args.data) as tar:
    for m in tar:
        parts = m.name.split("/")
        if m.isfile() and len(parts) == 4 and parts[1] == "test" and parts[2] in ("pos", "neg"):
            rid = int(parts[3].split("_")[0])
            if rid < args.n // 2:
                text = tar.extractfile(m).read().decode("utf-8")
                wanted[(parts[2], rid)] = " ".join(text.splitlines())
texts = [wanted[k] for k in sorted(wanted)]

# --- Python side: preprocessing.json alone, then onnxruntime -------------------------------
pre = json.load(open(os.path.join(args.out, "preprocessing.json"), encoding="utf-8"))
tok = pre["tokenizer"]
line_break = regex.compile(tok["line_break_pattern"])
token = regex.compile(tok["token_pattern"])
word_id = {w: pre["first_word_id"] + i for i, w in enumerate(pre["vocabulary"])}
ids_of, maxlen = pre["special_ids"], pre["maxlen"]

def encode(text):
    words = token.findall(line_break.sub(" ", text).lower())
    ids = [ids_of["start"]] + [word_id.get(w, ids_of["oov"]) for w in words]
    if len(ids) > maxlen:
        ids = ids[-maxlen:] if pre["truncating"] == "pre" else ids[:maxlen]
    pad = [ids_of["pad"]] * (maxlen - len(ids))
    return pad + ids if pre["padding"] == "pre" else ids + pad

session = ort.InferenceSession(os.path.join(args.out, "model.onnx"),
                               providers=["CPUExecutionProvider"])
x = np.array([encode(t) for t in texts], dtype=np.int64)
(onnx_p,) = session.run(None, {"input_ids": x})
onnx_p = onnx_p[:, 0].astype(np.float64)

# --- imdb-lstm predict --json on the same raw texts -----------------------------------------
with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
    f.write("\n".join(texts) + "\n")
    lines_file = f.name
out = subprocess.run([args.bin, "predict", "--json", "--model", args.model, "--file", lines_file],
                     check=True, capture_output=True, text=True).stdout
os.unlink(lines_file)
answers = [json.loads(l) for l in out.splitlines()]
rust_p = np.array([a["probability"] for a in answers], dtype=np.float64)
assert len(rust_p) == len(onnx_p), (len(rust_p), len(onnx_p))

diff = np.abs(onnx_p - rust_p)
labels = pre["labels"]
onnx_labels = onnx_p > 0.5
rust_labels = np.array([a["label"] == "positive" for a in answers])
agree = float(np.mean(onnx_labels == rust_labels))
print(f"{len(texts)} IMDB test reviews; onnxruntime {ort.__version__}; labels {labels}")
print(f"max |onnx - predict| = {diff.max():.3e} (mean {diff.mean():.3e}, review {diff.argmax()})")
print(f"label agreement: {100 * agree:.1f} %")
ok = diff.max() <= 1e-5 and agree == 1.0
print("OK" if ok else "FAILED: the difference must be <= 1e-5 and the labels agree 100 %")
sys.exit(0 if ok else 1)
