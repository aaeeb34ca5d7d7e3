"""End-to-end training and evaluation steps for the small, medium and large configs.

One benchmark round is one `[batch, steps]` batch; words/sec = batch*steps / time (pytest-benchmark
reports seconds; `python -m ptbfast bench` prints words/sec and ratios directly).
"""

import numpy as np
import pytest

from ptbfast.configs import get_config
from ptbfast.model import LSTMLanguageModel
from ptbfast.sgd import apply_sgd
from ptbfast.train import dropout_masks

from conftest import HAS_TORCH

IMPLS = ["ptbfast", pytest.param("torch", marks=pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed"))]


def setup(config_name):
    config = get_config(config_name)
    rng = np.random.default_rng(0)
    V, B, T = config.vocab_size, config.batch_size, config.num_steps
    return config, rng, rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config_name", ["small", "medium", "large"])
def test_train_step(benchmark, impl, config_name):
    config, rng, x, y = setup(config_name)
    benchmark.group = f"train step {config_name}"
    if impl == "ptbfast":
        model = LSTMLanguageModel(config.vocab_size, config.hidden_size, config.num_layers)
        box = {"state": model.initial_state(config.batch_size)}
        shape = (config.num_steps, config.batch_size, config.hidden_size)

        def step():
            masks = dropout_masks(rng, config.num_layers + 1, shape, config.keep_prob)
            _, grads, box["state"] = model.loss_and_sparse_grads(x, y, box["state"], masks)
            apply_sgd(model.params, grads, 0.1, config.max_grad_norm)
    else:
        from ptbfast.torch_baseline import make_torch_trainer
        train_step, _, zero_state = make_torch_trainer(config)
        box = {"state": zero_state(config.batch_size)}

        def step():
            _, box["state"] = train_step(x, y, box["state"], 0.1)
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config_name", ["small", "medium", "large"])
def test_eval_step(benchmark, impl, config_name):
    config, rng, x, y = setup(config_name)
    benchmark.group = f"eval step {config_name}"
    if impl == "ptbfast":
        model = LSTMLanguageModel(config.vocab_size, config.hidden_size, config.num_layers)
        box = {"state": model.initial_state(config.batch_size)}

        def step():
            _, box["state"] = model.loss(x, y, box["state"])
    else:
        from ptbfast.torch_baseline import make_torch_trainer
        _, eval_step, zero_state = make_torch_trainer(config)
        box = {"state": zero_state(config.batch_size)}

        def step():
            _, box["state"] = eval_step(x, y, box["state"])
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)


# Generation: one word a step (LanguageModel.generate's loop without the sampling), the LSTM state
# carried: one step of every layer for one id, then the logits of its output. The products of one row
# on ptbfast's loops or on the BLAS (ops.set_one_row_products: "auto" takes one of them by CPU).
GENERATION_IMPLS = ["ptbfast-loop", "ptbfast-blas", *IMPLS[1:]]


@pytest.mark.parametrize("impl", GENERATION_IMPLS)
@pytest.mark.parametrize("config_name", ["small", "medium", "large"])
def test_generation_step(benchmark, impl, config_name):
    from ptbfast import ops

    config = get_config(config_name)
    V, H, L = config.vocab_size, config.hidden_size, config.num_layers
    benchmark.group = f"generation step {config_name}"
    word = np.array([[1]])
    if impl.startswith("ptbfast"):
        model = LSTMLanguageModel(V, H, L)
        box = {"state": model.initial_state(1)}
        w, b = model.params["softmax_w"], model.params["softmax_b"]
        before = ops.one_row_products()
        ops.set_one_row_products("blas" if impl == "ptbfast-blas" else "ptbfast")

        def step():
            h, box["state"] = model.hidden_states(word, box["state"])
            return ops.matmul(h[0], w) + b
        try:
            with model.frozen(one_step=True):  # (as generate's)
                benchmark.pedantic(step, rounds=200, warmup_rounds=10)
        finally:
            ops.set_one_row_products(before)
    else:
        import torch
        from torch import nn

        embedding, lstm, linear = nn.Embedding(V, H), nn.LSTM(H, H, L), nn.Linear(H, V)
        box = {"state": None}
        ids = torch.from_numpy(word)

        def step():
            with torch.inference_mode():
                out, box["state"] = lstm(embedding(ids), box["state"])
                return linear(out[-1])
        benchmark.pedantic(step, rounds=200, warmup_rounds=10)
