"""A short real-PTB run of the small config: the first few hundred steps of TF's epoch 1.

Needs the Penn Treebank in PTBFAST_DATA (.ci/run sets it); skipped otherwise.
"""

import math
import os

import numpy as np
import pytest

from ptbfast.configs import get_config
from ptbfast.reader import load_corpus, ptb_producer
from ptbfast.sgd import apply_sgd
from ptbfast.train import Trainer, evaluate

DATA = os.environ.get("PTBFAST_DATA")
pytestmark = [
    pytest.mark.ptb,
    pytest.mark.slow,
    pytest.mark.skipif(not DATA, reason="set PTBFAST_DATA to a directory holding ptb.{train,valid,test}.txt"),
]

STEPS = 300


def test_small_config_learns_on_real_ptb():
    config = get_config("small")
    corpus = load_corpus(DATA)
    trainer = Trainer(config, corpus, progress=False, log=lambda s: None)
    model = trainer.model
    state = model.initial_state(config.batch_size)
    costs = []
    for step, (x, y) in enumerate(ptb_producer(corpus.train, config.batch_size, config.num_steps)):
        if step == STEPS:
            break
        cost, grads, state = model.loss_and_sparse_grads(x, y, state)
        apply_sgd(model.params, grads, config.learning_rate, config.max_grad_norm)
        costs.append(cost)
    first = math.exp(np.mean(costs[:10]) / config.num_steps)
    last = math.exp(np.mean(costs[-50:]) / config.num_steps)
    # At init every word is ~1/10,000 (perplexity ~10,000); TF's small config is near 500 after
    # 250-300 steps of its first epoch (its log shows a running 0.104 perplexity of ~830).
    assert first > 2000
    assert last < 600
    valid = evaluate(model, corpus.valid[:20_000], config.batch_size, config.num_steps)
    assert valid < 650
