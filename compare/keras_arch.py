"""Build each imdb-lstm preset in Keras 3 and write what Keras says about it, for tests/nn_arch.rs.

For every preset (and a few extra models) this writes tests/fixtures/keras/<preset>.json (`model.to_json()`, what
`--arch-file` reads) and <preset>.weights.json (per layer: name, class, output shape,
`count_params()`; every weight's name, with Keras's "sequential/" prefix and "*_cell/" level
dropped as imdb-lstm names them, and shape). Needs only `pip install keras jax scipy`:

    KERAS_BACKEND=numpy python compare/keras_arch.py
"""

import json
import os
import re
import sys

os.environ.setdefault("KERAS_BACKEND", "numpy")
import keras  # noqa: E402
from keras import layers as L  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "keras")


def presets():
    """(name, maxlen, layers) as src/nn/arch/presets.rs defines them; fasttext's input_dim is num_words
    (before the n-gram ids are added)."""
    return [
        ("lstm", 80, lambda: [L.Embedding(5000, 128), L.LSTM(128, dropout=0.2, recurrent_dropout=0.2),
                              L.Dense(1, activation="sigmoid")]),
        ("gru", 80, lambda: [L.Embedding(5000, 128), L.GRU(128, dropout=0.2, recurrent_dropout=0.2),
                             L.Dense(1, activation="sigmoid")]),
        ("bilstm", 100, lambda: [L.Embedding(20000, 128), L.Bidirectional(L.LSTM(64)), L.Dropout(0.5),
                                 L.Dense(1, activation="sigmoid")]),
        ("stacked-lstm", 80, lambda: [
            L.Embedding(5000, 128),
            L.LSTM(128, dropout=0.2, recurrent_dropout=0.2, return_sequences=True),
            L.LSTM(128, dropout=0.2, recurrent_dropout=0.2),
            L.Dense(1, activation="sigmoid")]),
        ("cnn", 400, lambda: [
            L.Embedding(5000, 50), L.Dropout(0.2),
            L.Conv1D(250, 3, padding="valid", activation="relu", strides=1),
            L.GlobalMaxPooling1D(), L.Dense(250), L.Dropout(0.2), L.Activation("relu"),
            L.Dense(1), L.Activation("sigmoid")]),
        ("cnn-lstm", 100, lambda: [
            L.Embedding(20000, 128), L.Dropout(0.25),
            L.Conv1D(64, 5, padding="valid", activation="relu", strides=1),
            L.MaxPooling1D(pool_size=4), L.LSTM(70), L.Dense(1), L.Activation("sigmoid")]),
        ("fasttext", 400, lambda: [L.Embedding(20000, 50), L.GlobalAveragePooling1D(),
                                   L.Dense(1, activation="sigmoid")]),
    ]


def extras():
    """Small models that are no preset, for what the presets leave out: the numbering after a
    Bidirectional (its inner LSTM takes a number: the next LSTM is lstm_1), GRU inside
    Bidirectional, sequences through pooling into GRU, a softmax head."""
    return [
        ("x-bilstm-then-lstm", 10, lambda: [
            L.Embedding(50, 4), L.Bidirectional(L.LSTM(8, return_sequences=True)), L.LSTM(4),
            L.Dense(1, activation="sigmoid")]),
        ("x-bigru", 10, lambda: [L.Embedding(50, 4), L.Bidirectional(L.GRU(8)),
                                 L.Dense(1, activation="sigmoid")]),
        ("x-cnn-gru-softmax", 20, lambda: [
            L.Embedding(100, 8), L.Conv1D(6, 3, activation="relu"), L.MaxPooling1D(2),
            L.GRU(5, return_sequences=True), L.GlobalAveragePooling1D(),
            L.Dense(4, activation="relu"), L.Dense(3, activation="softmax")]),
    ]


def our_name(path):
    """'sequential/bidirectional/forward_lstm/lstm_cell/kernel' -> 'bidirectional/forward_lstm/kernel'."""
    parts = path.split("/")[1:]
    return "/".join(p for p in parts if not re.fullmatch(r"\w+_cell", p))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, maxlen, build in presets() + extras():
        keras.backend.clear_session()  # layer names restart at 'embedding', 'lstm', ...
        model = keras.Sequential([keras.Input(shape=(maxlen,), dtype="int32"), *build()])
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            f.write(model.to_json(indent=1) + "\n")
        facts = {
            "keras_version": keras.__version__,
            "layers": [
                {"name": l.name, "class": l.__class__.__name__,
                 "output_shape": list(l.output.shape), "params": l.count_params()}
                for l in model.layers
            ],
            "tensors": [[our_name(w.path), list(w.shape)] for w in model.weights],
            "total_params": model.count_params(),
        }
        with open(os.path.join(OUT, f"{name}.weights.json"), "w") as f:
            f.write(json.dumps(facts, indent=1) + "\n")
        print(f"{name}: total {model.count_params()}")
        for l in facts["layers"]:
            print(f"  {l['name']:<26} {l['class']:<24} {str(l['output_shape']):<18} {l['params']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
