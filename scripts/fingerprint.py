"""Fingerprint of fixed-seed training runs: every parameter's sha256 and the perplexities.

A change that must not move a single bit (a refactor) is checked by running this before and after
it at the same thread count and comparing the two JSON files:

    python scripts/fingerprint.py PTB_DIR before.json   # (then change, rebuild, run again)
    python scripts/fingerprint.py PTB_DIR after.json && cmp before.json after.json

Four short Trainer runs on a slice of PTB (small with dropout, small tied with the dense norm, the
test config, a medium-shaped one) and both output-layer paths (column chunks and whole rows).
"""
import dataclasses
import hashlib
import json
import sys

import numpy as np

import ptbfast
from ptbfast import ops
from ptbfast import train as T
from ptbfast.configs import get_config
from ptbfast.reader import load_corpus

ptbfast.set_num_threads(2)
full = load_corpus(sys.argv[1])
corpus = dataclasses.replace(full, train=full.train[:30000], valid=full.valid[:8000], test=full.test[:3000])
out = {}
for name, cfg in {
    "small_dropout": get_config("small", max_max_epoch=2, max_epoch=1, keep_prob=0.5),
    "small_tied_dense": get_config("small", max_max_epoch=1, tie_weights=True, grad_norm="dense"),
    "test": get_config("test", max_max_epoch=2),
    "medium_short": get_config("medium", max_max_epoch=1, hidden_size=300),
}.items():
    c = corpus if name != "medium_short" else dataclasses.replace(corpus, train=corpus.train[:8000])
    tr = T.Trainer(cfg, c, progress=False, log=lambda s: None)
    res = tr.train()
    h = hashlib.sha256()
    for k in sorted(tr.model.params):
        h.update(k.encode())
        h.update(tr.model.params[k].tobytes())
    out[name] = {"params": h.hexdigest()[:16], "test": res["test_perplexity"],
                 "valid": [r["valid_perplexity"] for r in res["history"]],
                 "train": [r["train_perplexity"] for r in res["history"]]}
# the column-chunk output layer paths (large vocabulary) directly
rng = np.random.default_rng(0)
N, H, V = 300, 40, 70000
h_ = rng.standard_normal((N, H)).astype(np.float32)
w = (rng.standard_normal((H, V)) * 0.1).astype(np.float32)
b = rng.standard_normal(V).astype(np.float32)
t = rng.integers(0, V, N)
r = ops.output_layer_loss_and_grads(h_, w, b, t, 0.05)
f = ops.output_layer_loss(h_, w, b, t)
hh = hashlib.sha256()
for a in r[1:] + (f[1],):
    hh.update(np.asarray(a).tobytes())
out["output_layer_big_vocab"] = {"hash": hh.hexdigest()[:16], "total": r[0], "fwd": f[0]}
r = ops.output_layer_loss_and_grads(h_, w[:, :9000].copy(), b[:9000].copy(), t % 9000, 0.05)
hh = hashlib.sha256()
for a in r[1:]:
    hh.update(np.asarray(a).tobytes())
out["output_layer_whole_rows"] = {"hash": hh.hexdigest()[:16], "total": r[0]}
with open(sys.argv[2], "w") as file:
    json.dump(out, file, indent=1)
print(json.dumps(out, indent=1))
