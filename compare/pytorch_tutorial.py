# Same-machine reference for BENCHMARKS.md (not part of the build or the tests).
# Run: python -m venv v && v/bin/pip install torch && v/bin/python compare/pytorch_tutorial.py
# The tutorial's model in PyTorch (fused nn.LSTM, no recurrent dropout: nn.LSTM has none),
# 2 epochs of 25,000 sequences of 80 tokens, batch 32, Adam; validation over 25,000; 2 threads.
import time, resource, torch, torch.nn as nn
torch.set_num_threads(2)
torch.manual_seed(0)
N, T, V = 25000, 80, 5000
xtr = torch.randint(0, V, (N, T)); ytr = torch.randint(0, 2, (N,)).float()
xte = torch.randint(0, V, (N, T)); yte = torch.randint(0, 2, (N,)).float()
class M(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, 128); s.drop = nn.Dropout(0.2)
        s.lstm = nn.LSTM(128, 128, batch_first=True); s.fc = nn.Linear(128, 1)
    def forward(s, x):
        _, (h, _) = s.lstm(s.drop(s.emb(x)))
        return s.fc(h[-1]).squeeze(1)
m = M(); opt = torch.optim.Adam(m.parameters(), lr=1e-3, eps=1e-7); lossf = nn.BCEWithLogitsLoss()
total = 0.0
for ep in range(2):
    m.train(); t0 = time.time(); perm = torch.randperm(N)
    for i in range(0, N, 32):
        idx = perm[i:i+32]
        opt.zero_grad(); loss = lossf(m(xtr[idx]), ytr[idx]); loss.backward(); opt.step()
    tt = time.time() - t0
    m.eval(); t0 = time.time()
    with torch.no_grad():
        for i in range(0, N, 1024):
            m(xte[i:i+1024])
    tv = time.time() - t0
    total += tt + tv
    print(f"epoch {ep+1}: train {tt:.1f} s, validation {tv:.1f} s", flush=True)
print(f"total {total:.1f} s for 2 epochs; torch {torch.__version__}, threads {torch.get_num_threads()}")
with torch.no_grad():
    m.eval(); best = 0
    for _ in range(3):
        t0 = time.time()
        for i in range(0, 8192, 1024):
            m(xte[i:i+1024])
        best = max(best, 8192 / (time.time() - t0))
print(f"inference at batch 1024 from ids: {best:.0f} reviews/s (best of 3)")
print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB")
