# Same-machine reference for BENCHMARKS.md (not part of the build or the tests): each
# `--arch` preset of imdb-lstm written in PyTorch, one training epoch over 25,000 random
# sequences with the preset's maxlen, vocabulary and batch size, Adam, 2 threads.
# Run: python -m venv v && v/bin/pip install torch && v/bin/python compare/pytorch_presets.py [NAME ...]
# PyTorch's fused nn.LSTM / nn.GRU have no recurrent dropout, so the recurrent presets run
# here without it (imdb-lstm's lstm, gru and stacked-lstm do it, which costs extra GEMMs).
# nn.GRU is PyTorch's reset-after GRU, the same cell as Keras's default.
import sys, time, torch, torch.nn as nn

torch.set_num_threads(2)
torch.manual_seed(0)
N = 25000


class Last(nn.Module):
    """The recurrent layer's last state (both directions concatenated when bidirectional)."""

    def __init__(s, rnn):
        super().__init__()
        s.rnn = rnn

    def forward(s, x):
        y, _ = s.rnn(x)
        if s.rnn.bidirectional:
            h = s.rnn.hidden_size
            return torch.cat([y[:, -1, :h], y[:, 0, h:]], dim=1)
        return y[:, -1]


class Seq(nn.Module):
    def __init__(s, rnn):
        super().__init__()
        s.rnn = rnn

    def forward(s, x):
        return s.rnn(x)[0]


class Conv(nn.Module):
    """Keras's Conv1D (channels last) with valid padding and relu."""

    def __init__(s, d, f, k):
        super().__init__()
        s.c = nn.Conv1d(d, f, k)

    def forward(s, x):
        return torch.relu(s.c(x.transpose(1, 2))).transpose(1, 2)


class Pool(nn.Module):
    def __init__(s, kind, k=None):
        super().__init__()
        s.kind, s.k = kind, k

    def forward(s, x):
        if s.kind == "max":
            return x.max(dim=1).values
        if s.kind == "avg":
            return x.mean(dim=1)
        return nn.functional.max_pool1d(x.transpose(1, 2), s.k).transpose(1, 2)


def preset(name):
    """(model, vocabulary, maxlen, batch) as imdb-lstm's preset of that name."""
    E = nn.Embedding
    if name in ("lstm", "gru"):
        cell = nn.LSTM if name == "lstm" else nn.GRU
        layers = [E(5000, 128), nn.Dropout(0.2), Last(cell(128, 128, batch_first=True)), nn.Linear(128, 1)]
        return nn.Sequential(*layers), 5000, 80, 32
    if name == "stacked-lstm":
        layers = [E(5000, 128), nn.Dropout(0.2), Seq(nn.LSTM(128, 128, batch_first=True)),
                  nn.Dropout(0.2), Last(nn.LSTM(128, 128, batch_first=True)), nn.Linear(128, 1)]
        return nn.Sequential(*layers), 5000, 80, 32
    if name == "bilstm":
        layers = [E(20000, 128), Last(nn.LSTM(128, 64, batch_first=True, bidirectional=True)),
                  nn.Dropout(0.5), nn.Linear(128, 1)]
        return nn.Sequential(*layers), 20000, 100, 32
    if name == "cnn":
        layers = [E(5000, 50), nn.Dropout(0.2), Conv(50, 250, 3), Pool("max"), nn.Linear(250, 250),
                  nn.Dropout(0.2), nn.ReLU(), nn.Linear(250, 1)]
        return nn.Sequential(*layers), 5000, 400, 32
    if name == "cnn-lstm":
        layers = [E(20000, 128), nn.Dropout(0.25), Conv(128, 64, 5), Pool("window", 4),
                  Last(nn.LSTM(64, 70, batch_first=True)), nn.Linear(70, 1)]
        return nn.Sequential(*layers), 20000, 100, 30
    if name == "fasttext":
        # 20,000 words plus about 1.2 million bigram ids, as the example's table.
        V = 20000 + 1_200_000
        layers = [E(V, 50), Pool("avg"), nn.Linear(50, 1)]
        return nn.Sequential(*layers), V, 400, 32
    raise SystemExit(f"unknown preset {name}")


# STEPS=N times only the first N batches and extrapolates to the epoch (fasttext's dense Adam
# over 61 M parameters makes a full epoch take minutes).
import os
STEPS = int(os.environ.get("STEPS", "0"))
names = sys.argv[1:] or ["lstm", "gru", "bilstm", "stacked-lstm", "cnn", "cnn-lstm", "fasttext"]
for name in names:
    m, V, T, B = preset(name)
    x = torch.randint(0, V, (N, T))
    y = torch.randint(0, 2, (N,)).float()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7)
    lossf = nn.BCEWithLogitsLoss()
    m.train()
    t0 = time.time()
    perm = torch.randperm(N)
    batches = range(0, N, B)
    if STEPS:
        batches = batches[:STEPS]
    for i in batches:
        idx = perm[i : i + B]
        opt.zero_grad()
        loss = lossf(m(x[idx]).squeeze(1), y[idx])
        loss.backward()
        opt.step()
    secs = (time.time() - t0) * len(range(0, N, B)) / len(batches)
    note = f", extrapolated from {len(batches)} batches" if STEPS else ""
    print(f"{name}: {secs:.1f} s per training epoch{note} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)", flush=True)
