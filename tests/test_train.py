"""Training: the clipped SGD step, dropout masks, evaluation, the trainer, checkpoints and resume.

The SGD step and the clipping norm are checked against gradients of the float64 NumPy reference
model run on the same weights. Training runs use a tiny synthetic corpus (tests/synthetic_corpus.py,
30 words, ~170 batches of 4 x 5 per epoch) so that each takes a fraction of a second. The command
line (killed and resumed runs included) is tested in tests/test_cli.py.
"""

import dataclasses
import json
import math
import signal
import warnings

import numpy as np
import pytest

import ptbfast
from ptbfast import checkpoint, reader
from ptbfast.configs import get_config
from ptbfast import reference as ref
from ptbfast.model import LSTMLanguageModel
from ptbfast.grads import IndexedSlices
from ptbfast.sgd import TrainingError, apply_sgd, global_norm
from ptbfast.train import CHECKPOINT_NAME, METRICS_NAME, Trainer, dropout_masks, evaluate

from helpers import epochs_of, max_rel_error, same_params

RTOL = 1e-4  # float32 against float64 reference; any real bug is an error of order 1


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- gradients of one batch, from ptbfast and from the float64 reference ---------------------------

V, H, L, B, T = 11, 6, 2, 3, 4


def make_batch(seed=0, keep_prob=None, num_layers=L, init_scale=0.3):
    """A model, a batch whose inputs repeat ids heavily (ids 0-2 only), a non-zero state and masks."""
    rng = np.random.default_rng(seed)
    model = LSTMLanguageModel(V, H, num_layers, forget_bias=0.5, init_scale=init_scale, seed=seed)
    x = rng.integers(0, 3, size=(B, T))
    y = rng.integers(0, V, size=(B, T))
    state = [tuple((rng.standard_normal((B, H)) * 0.5).astype(np.float32) for _ in range(2))
             for _ in range(num_layers)]
    masks = None
    if keep_prob is not None:
        masks = dropout_masks(rng, num_layers + 1, (T, B, H), keep_prob)
    return model, x, y, state, masks


# One layer with large weights: the embedding's share of the clipping norm is big enough that the
# two norm modes differ by ~7% in total, so a step clipped by the wrong norm is caught.
NORM_BATCH = dict(num_layers=1, init_scale=1.0)


def reference_grads(model, x, y, state, masks, monkeypatch):
    """Dense float64 gradients of the same weights, plus the per-token embedding rows [T*B, H].

    The reference only returns the merged embedding gradient, so the rows it scatter-adds are
    captured on their way into ``embedding_lookup_backward`` (time-major, as ptbfast's indices).
    """
    net = ref.NumpyLSTMLanguageModel(V, H, model.num_layers, model.forget_bias, dtype=np.float64)
    net.params = {name: a.astype(np.float64) for name, a in model.params.items()}
    captured = {}
    original = ref.embedding_lookup_backward

    def capture(d_out, ids, vocab_size):
        captured["rows"] = d_out.reshape(-1, d_out.shape[-1]).copy()
        captured["ids"] = np.asarray(ids).reshape(-1).copy()
        return original(d_out, ids, vocab_size)

    monkeypatch.setattr(ref, "embedding_lookup_backward", capture)
    state64 = [(c.astype(np.float64), h.astype(np.float64)) for c, h in state]
    masks64 = None if masks is None else [m.astype(np.float64) for m in masks]
    cost, grads, _ = net.loss_and_grads(x, y, state64, masks64)
    monkeypatch.undo()
    return cost, grads, captured["rows"], captured["ids"]


def reference_norms(grads, rows):
    others = sum(float(np.sum(g ** 2)) for name, g in grads.items() if name != "embedding")
    return {"indexed_slices": math.sqrt(others + float(np.sum(rows ** 2))),
            "dense": math.sqrt(others + float(np.sum(grads["embedding"] ** 2)))}


@pytest.mark.parametrize("keep_prob", [None, 0.7])
def test_sparse_gradient_rows_match_reference(monkeypatch, keep_prob):
    model, x, y, state, masks = make_batch(keep_prob=keep_prob)
    cost, grads, _ = model.loss_and_sparse_grads(x, y, state, masks)
    ref_cost, ref_grads, rows, ids = reference_grads(model, x, y, state, masks, monkeypatch)
    assert cost == pytest.approx(ref_cost, rel=1e-5)
    emb = grads["embedding"]
    assert isinstance(emb, IndexedSlices)
    assert emb.values.shape == (T * B, H)  # one row per token, repeats not merged
    np.testing.assert_array_equal(emb.indices, ids)
    np.testing.assert_array_equal(emb.indices, np.asarray(x).T.reshape(-1))
    assert max_rel_error(emb.values, rows) < RTOL
    merged = np.zeros((V, H))
    np.add.at(merged, emb.indices, emb.values.astype(np.float64))
    assert max_rel_error(merged, ref_grads["embedding"]) < RTOL
    assert max_rel_error(emb.to_dense(), ref_grads["embedding"]) < RTOL
    for name in model.params:
        if name != "embedding":
            assert max_rel_error(grads[name], ref_grads[name]) < RTOL, name


def test_global_norm_both_modes_match_reference(monkeypatch):
    model, x, y, state, masks = make_batch(**NORM_BATCH)
    _, grads, _ = model.loss_and_sparse_grads(x, y, state, masks)
    _, ref_grads, rows, _ = reference_grads(model, x, y, state, masks, monkeypatch)
    expected = reference_norms(ref_grads, rows)
    indexed = global_norm(grads, "indexed_slices")
    dense = global_norm(grads, "dense")
    assert indexed == pytest.approx(expected["indexed_slices"], rel=1e-5)
    assert dense == pytest.approx(expected["dense"], rel=1e-5)
    assert global_norm(grads) == indexed  # TF's way is the default
    # The embedding's share alone (the softmax gradients dominate the totals): repeated ids make
    # the per-token rows and the merged rows clearly different.
    emb = {"embedding": grads["embedding"]}
    emb_indexed, emb_dense = global_norm(emb, "indexed_slices"), global_norm(emb, "dense")
    assert emb_indexed == pytest.approx(math.sqrt(np.sum(rows ** 2)), rel=1e-5)
    assert emb_dense == pytest.approx(math.sqrt(np.sum(ref_grads["embedding"] ** 2)), rel=1e-5)
    assert abs(emb_indexed - emb_dense) > 0.2 * emb_dense
    assert abs(indexed - dense) > 0.03 * dense
    # Dense gradients have no IndexedSlices: both modes give the dense norm.
    _, dense_grads, _ = model.loss_and_grads(x, y, state, masks)
    for mode in ("indexed_slices", "dense"):
        assert global_norm(dense_grads, mode) == pytest.approx(expected["dense"], rel=1e-5)


@pytest.mark.parametrize("mode", ["indexed_slices", "dense"])
@pytest.mark.parametrize("clipped", [True, False])
def test_apply_sgd_is_clipped_sgd(monkeypatch, mode, clipped):
    model, x, y, state, masks = make_batch(**NORM_BATCH)
    _, grads, _ = model.loss_and_sparse_grads(x, y, state, masks)
    _, ref_grads, rows, _ = reference_grads(model, x, y, state, masks, monkeypatch)
    norm = reference_norms(ref_grads, rows)[mode]
    max_norm = norm * (0.25 if clipped else 4.0)
    lr = 0.5 / min(norm, max_norm)  # an update of norm ~0.5: far above float32 rounding of the weights
    before = {name: a.copy() for name, a in model.params.items()}

    returned = apply_sgd(model.params, grads, lr, max_norm, mode)

    assert returned == pytest.approx(norm, rel=1e-5)
    scale = max_norm / max(norm, max_norm)
    assert scale == (pytest.approx(0.25) if clipped else 1.0)
    for name, param in model.params.items():
        assert param.dtype == np.float32
        expected = before[name].astype(np.float64) - lr * scale * ref_grads[name]
        assert max_rel_error(param - before[name].astype(np.float64), expected - before[name]) < RTOL, name
    used = np.unique(x)
    unused = np.setdiff1d(np.arange(V), used)
    np.testing.assert_array_equal(model.params["embedding"][unused], before["embedding"][unused])
    assert np.all(np.any(model.params["embedding"][used] != before["embedding"][used], axis=1))
    if mode == "dense" and clipped:  # the whole update has exactly the clipping norm
        step = math.sqrt(sum(float(np.sum((model.params[n].astype(np.float64) - before[n]) ** 2))
                             for n in model.params))
        assert step == pytest.approx(lr * max_norm, rel=1e-4)


@pytest.mark.parametrize("mode", ["indexed_slices", "dense"])
@pytest.mark.parametrize("where, bad", [("softmax_b", np.nan), ("lstm_1/kernel", np.inf), ("embedding", np.nan)])
def test_apply_sgd_refuses_non_finite_gradients(mode, where, bad):
    model, x, y, state, masks = make_batch()
    _, grads, _ = model.loss_and_sparse_grads(x, y, state, masks)
    target = grads[where].values if where == "embedding" else grads[where]
    target.flat[3] = bad
    before = {name: a.copy() for name, a in model.params.items()}
    with pytest.raises(TrainingError, match="gradient norm is (nan|inf)"):
        apply_sgd(model.params, grads, 1.0, 5.0, mode)
    for name in before:
        np.testing.assert_array_equal(model.params[name], before[name])


def _wrong_shape(grads):
    grads["lstm_0/kernel"] = grads["lstm_0/kernel"][:-1]


def _outside(grads):
    indices = grads["embedding"].indices.copy()
    indices[0] = -1
    grads["embedding"] = grads["embedding"]._replace(indices=indices)


def _foreign(grads):
    grads["no_such"] = np.zeros(3, np.float32)


@pytest.mark.parametrize("change, lr, max_norm, mode, error, says", [
    (None, -1.0, 5.0, "dense", ValueError, "learning_rate must be a finite number >= 0, got -1.0"),
    (None, 1.0, -1.0, "dense", ValueError, "max_grad_norm must be a finite number > 0, got -1.0"),  # (went uphill)
    (None, 1.0, 0.0, "dense", ValueError, "max_grad_norm must be"),
    (None, 1.0, 5.0, "Dense", ValueError, "mode must be one of indexed_slices, dense, got 'Dense'"),
    (_wrong_shape, 1.0, 5.0, "dense", ValueError, "the gradient of lstm_0/kernel has shape"),
    (_outside, 1.0, 5.0, "indexed_slices", IndexError, "the gradient of embedding has rows outside"),
    (_foreign, 1.0, 5.0, "dense", KeyError, "no_such")])
def test_apply_sgd_checks_everything_before_any_update(change, lr, max_norm, mode, error, says):
    # (a gradient of the wrong shape was found after the parameters before it had been updated)
    model, x, y, state, masks = make_batch()
    _, grads, _ = model.loss_and_sparse_grads(x, y, state, masks)
    grads = dict(sorted(grads.items(), key=lambda item: item[0] != "softmax_b"))  # (one that would go first)
    if change is not None:
        change(grads)
    before = {name: a.copy() for name, a in model.params.items()}
    with pytest.raises(error, match=says):
        apply_sgd(model.params, grads, lr, max_norm, mode)
    for name in before:
        np.testing.assert_array_equal(model.params[name], before[name])


def test_apply_sgd_refuses_an_update_that_repeated_rows_would_overflow():
    # Two rows of id 0 make a norm of sqrt(2) over the rows, but their sum, sqrt(2) times that, is
    # the update of row 0: the guard counts the repeats (it passed, and row 0 became -inf).
    params = {"embedding": np.zeros((3, 1), np.float32)}
    rows = IndexedSlices(np.array([0, 0]), np.ones((2, 1), np.float32), (3, 1))
    with pytest.raises(TrainingError, match="overflows float32"):
        apply_sgd(params, {"embedding": rows}, 2.9e38, 1.0)
    assert not params["embedding"].any()
    apply_sgd(params, {"embedding": rows}, 2.3e38, 1.0)  # (2.3e38 * 2 / sqrt(2) * sqrt(2) fits float32)
    assert np.isfinite(params["embedding"]).all() and params["embedding"][0, 0] < -3e38
    # The dense norm is over the merged rows already (2 here): no factor, and 2.9e38 fits.
    params["embedding"][:] = 0
    apply_sgd(params, {"embedding": rows}, 2.9e38, 1.0, "dense")
    assert params["embedding"][0, 0] == np.float32(-2.9e38)

# ---- dropout masks -------------------------------------------------------------------------------

def test_dropout_masks_values_mean_and_reproducibility():
    shape = (40, 20, 30)
    masks = dropout_masks(np.random.default_rng(7), 3, shape, 0.6)
    assert len(masks) == 3
    for m in masks:
        assert m.shape == shape and m.dtype == np.float32
        assert set(np.unique(m)) == {np.float32(0.0), np.float32(1 / 0.6)}
        assert abs(np.mean(m != 0) - 0.6) < 0.02  # 24,000 draws: std 0.003
        assert np.mean(m) == pytest.approx(1.0, abs=0.04)  # inverted dropout keeps the expectation
    assert not np.array_equal(masks[0], masks[1])  # independent masks per layer
    again = dropout_masks(np.random.default_rng(7), 3, shape, 0.6)
    for a, b in zip(masks, again):
        np.testing.assert_array_equal(a, b)
    other = dropout_masks(np.random.default_rng(8), 3, shape, 0.6)
    assert not np.array_equal(masks[0], other[0])


def test_dropout_masks_none_without_dropout():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert dropout_masks(rng, 3, (2, 2, 2), 1.0) is None
    assert rng.bit_generator.state == state  # no draws are consumed


# ---- evaluate -------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, num_steps", [(1, 1), (3, 2), (2, 5)])
def test_evaluate_equals_naive_loop_over_ptb_producer(batch_size, num_steps):
    model = LSTMLanguageModel(10, 5, 2, init_scale=0.5, seed=3)
    data = np.random.default_rng(4).integers(0, 10, size=97).astype(np.int32)
    state = model.initial_state(batch_size)
    costs = 0.0
    for x, y in reader.ptb_producer(data, batch_size, num_steps):
        cost, state = model.loss(x, y, state)
        costs += cost
    n = reader.epoch_size(len(data), batch_size, num_steps)
    expected = math.exp(costs / (n * num_steps))

    widths = []
    loss = model.loss

    def counting_loss(x, y, st, total_batch=None):
        widths.append(np.shape(x)[1])
        return loss(x, y, st, total_batch=total_batch)

    model.loss = counting_loss
    got = evaluate(model, data, batch_size, num_steps, chunk_rows=7)
    assert got == pytest.approx(expected, rel=1e-5)
    assert len(widths) > 2 and sum(widths) == n * num_steps  # several chunks, every step once
    assert all(w % num_steps == 0 for w in widths[:-1])
    assert evaluate(model, data, batch_size, num_steps) == pytest.approx(expected, rel=1e-5)  # one chunk


def test_evaluate_rejects_too_little_data():
    model = LSTMLanguageModel(10, 4, 1)
    with pytest.raises(ValueError, match="too few"):
        evaluate(model, np.arange(5, dtype=np.int32), 2, 2)


# ---- the trainer ----------------------------------------------------------------------------------
# On the synthetic corpus with the tiny config (tests/conftest.py: corpus, tiny_config), three epochs
# where a test looks at how perplexity falls.

def run(config, corpus, **kwargs):
    lines = []
    trainer = Trainer(config, corpus, log=lines.append, progress=False, **kwargs)
    result = trainer.train()
    return trainer, result, lines


def test_training_lowers_perplexity_and_logs_like_tf(corpus, tiny_config):
    assert corpus.vocab_size == 30
    _, result, lines = run(tiny_config(max_max_epoch=3), corpus)
    history = result["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    train = [row["train_perplexity"] for row in history]
    valid = [row["valid_perplexity"] for row in history]
    assert train[0] > train[1] > train[2]
    assert valid[0] > valid[1] > valid[2]
    assert valid[2] < 0.5 * valid[0] and result["test_perplexity"] < 0.3 * corpus.vocab_size
    assert lines[0] == "Epoch: 1 Learning rate: 1.000"
    for row in history:
        assert f"Epoch: {row['epoch']} Train Perplexity: {row['train_perplexity']:.3f}" in lines
        assert f"Epoch: {row['epoch']} Valid Perplexity: {row['valid_perplexity']:.3f}" in lines
    assert lines[-1] == f"Test Perplexity: {result['test_perplexity']:.3f}"


def test_training_with_tied_weights(corpus, tmp_path, tiny_config):
    trainer, result, _ = run(tiny_config(tie_weights=True, max_max_epoch=3), corpus, save_path=tmp_path)
    assert "softmax_w" not in trainer.model.params
    valid = [row["valid_perplexity"] for row in result["history"]]
    assert valid[2] < 0.5 * valid[0]
    lm = ptbfast.load(tmp_path / CHECKPOINT_NAME)  # the tied model loads and predicts
    assert lm.model.tie_weights and len(lm.next_word_probs("", k=3)) == 3


def test_learning_rate_schedule_is_tf(corpus, tiny_config):
    config = tiny_config(learning_rate=0.8, lr_decay=0.5, max_epoch=2, max_max_epoch=4)
    _, result, lines = run(config, corpus)
    # TF: lr_decay = config.lr_decay ** max(i + 1 - config.max_epoch, 0.0); lr = learning_rate * lr_decay
    expected = [0.8 * 0.5 ** max(i + 1 - 2, 0.0) for i in range(4)]
    assert expected == [0.8, 0.8, 0.4, 0.2]
    assert [row["learning_rate"] for row in result["history"]] == pytest.approx(expected, rel=1e-15)
    assert [line for line in lines if "Learning rate" in line] == [
        f"Epoch: {i + 1} Learning rate: {lr:.3f}" for i, lr in enumerate(expected)]


def test_training_with_dropout(corpus, tiny_config):
    plain, _, _ = run(tiny_config(max_max_epoch=3), corpus)
    trainer, result, _ = run(tiny_config(keep_prob=0.8, max_max_epoch=3), corpus)
    valid = [row["valid_perplexity"] for row in result["history"]]
    assert valid[0] > valid[1] > valid[2] and valid[2] < 0.5 * valid[0]
    assert not same_params(trainer.model.params, plain.model.params)  # the masks did something


def test_same_seed_gives_bit_identical_training(corpus, tiny_config):
    config = tiny_config(keep_prob=0.8, max_max_epoch=2)
    a, result_a, _ = run(config, corpus)
    b, result_b, _ = run(config, corpus)
    assert same_params(a.model.params, b.model.params)
    assert epochs_of(result_a["history"]) == epochs_of(result_b["history"])
    assert result_a["test_perplexity"] == result_b["test_perplexity"]
    c, _, _ = run(config.replace(seed=1), corpus)
    assert not same_params(a.model.params, c.model.params)


def test_metrics_and_final_checkpoint(corpus, tmp_path, tiny_config):
    trainer, result, _ = run(tiny_config(max_max_epoch=3), corpus, save_path=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / METRICS_NAME).read_text().splitlines()]
    assert len(rows) == 4
    assert epochs_of(rows[:3]) == epochs_of(result["history"])
    assert rows[3]["test_perplexity"] == result["test_perplexity"]
    params, meta, _ = checkpoint.load(tmp_path / "run" / CHECKPOINT_NAME)
    assert same_params(params, trainer.model.params)
    assert meta["position"]["finished"] and meta["position"]["epoch"] == 3
    assert meta["vocabulary"] == corpus.id_to_word and meta["config"] == trainer.config.to_dict()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT_NAME, CHECKPOINT_NAME + ".prev", METRICS_NAME]


@pytest.mark.parametrize("field", ["init_scale", "learning_rate", "max_grad_norm", "keep_prob", "lr_decay",
                                   "forget_bias"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_config_refuses_non_finite_numbers(field, bad):
    # A NaN passes no comparison and so slipped past the range checks (a NaN lr_decay surfaced only
    # when the decay began, epochs into the run); inf is no "no clipping" either.
    with pytest.raises(ValueError, match=f"config.{field} must be a finite number"):
        get_config("small", **{field: bad})


@pytest.mark.parametrize("field, bad, says", [("learning_rate", -1.0, "> 0"), ("learning_rate", 0.0, "> 0"),
                                              ("max_grad_norm", 0.0, "> 0"), ("lr_decay", -0.5, "> 0"),
                                              ("init_scale", -0.1, ">= 0"), ("keep_prob", 0.0, "in \\(0, 1\\]")])
def test_config_names_the_field_and_value_out_of_range(field, bad, says):
    with pytest.raises(ValueError, match=f"config.{field} must be {says}, got {bad}"):
        get_config("small", **{field: bad})


@pytest.mark.parametrize("split, changes", [("train", {}), ("valid", {}), ("test", {"eval_num_steps": 4})])
def test_too_short_a_split_is_refused_before_training(corpus, tiny_config, split, changes):
    # Not after an epoch's training (valid) or after all of them (test).
    config = tiny_config(**changes)
    rows = config.batch_size if split != "test" else config.eval_batch_size
    short = dataclasses.replace(corpus, **{split: getattr(corpus, split)[:rows * 2]})
    match = f"the {split} data \\({rows * 2} tokens, .*\\) are too few"
    with pytest.raises(ValueError, match=match):
        Trainer(config, short)


def test_vocab_size_below_corpus_vocabulary_is_rejected(corpus, tiny_config):
    with pytest.raises(ValueError, match=f"corpus has {corpus.vocab_size} words.*vocab_size is 29"):
        Trainer(tiny_config(vocab_size=corpus.vocab_size - 1), corpus)
    Trainer(tiny_config(vocab_size=corpus.vocab_size + 5), corpus)  # larger is fine, as in TF


# ---- resume -----------------------------------------------------------------------------------------

RESUME_CHANGES = dict(keep_prob=0.8, max_max_epoch=3)  # dropout on, so that resuming must restore the RNG too


@pytest.fixture(scope="module")
def uninterrupted(corpus, tiny_config):
    trainer, result, _ = run(tiny_config(**RESUME_CHANGES), corpus)
    return trainer.model.params, result


def n_batches(config, corpus):
    return reader.epoch_size(len(corpus.train), config.batch_size, config.num_steps)


def on_step(trainer, call, action):
    """Run ``action(trainer)`` before the ``call``-th training step (1-based, counted over epochs)."""
    inner = trainer.model.loss_and_sparse_grads
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            action(trainer)
        return inner(*args, **kwargs)

    trainer.model.loss_and_sparse_grads = wrapped


def resume(config, corpus, save_path):
    trainer = Trainer(config, corpus, save_path=save_path, log=lambda s: None, progress=False)
    trainer.restore()
    return trainer, trainer.position.epoch, trainer.position.step, trainer.train()


def assert_same_run(trainer, result, uninterrupted):
    params, expected = uninterrupted
    assert same_params(trainer.model.params, params)
    assert result["test_perplexity"] == expected["test_perplexity"]
    assert epochs_of(result["history"]) == epochs_of(expected["history"])


def test_resume_after_stop_signal_mid_epoch(corpus, tmp_path, uninterrupted, tiny_config):
    config, lines = tiny_config(**RESUME_CHANGES), []
    trainer = Trainer(config, corpus, save_path=tmp_path, log=lines.append, progress=False)
    on_step(trainer, n_batches(config, corpus) + 8, lambda t: setattr(t.signals, "received", signal.SIGINT))  # as the handler does
    stopped = trainer.train()
    assert stopped["stopped"] and len(stopped["history"]) == 1
    assert lines[-1] == (f"Stopped by signal {signal.SIGINT} at epoch 2, step 8; checkpoint saved to "
                         f"{tmp_path / CHECKPOINT_NAME}")
    resumed, epoch, step, result = resume(config, corpus, tmp_path)
    assert (epoch, step) == (1, 8)
    assert_same_run(resumed, result, uninterrupted)


def test_a_stop_signal_without_a_save_path_says_nothing_was_saved(corpus, tiny_config):
    config, lines = tiny_config(**RESUME_CHANGES), []
    trainer = Trainer(config, corpus, log=lines.append, progress=False)
    on_step(trainer, 3, lambda t: setattr(t.signals, "received", signal.SIGINT))
    assert trainer.train()["stopped"]
    assert lines[-1] == f"Stopped by signal {signal.SIGINT} at epoch 1, step 3; nothing saved (no save path)"


def test_resume_after_crash_from_periodic_checkpoint(corpus, tmp_path, uninterrupted, tiny_config):
    config = tiny_config(**RESUME_CHANGES)
    trainer = Trainer(config, corpus, save_path=tmp_path, log=lambda s: None, progress=False, checkpoint_every=5)

    def crash(_):
        raise KeyboardInterrupt  # what the default SIGINT handler would raise mid-step

    on_step(trainer, 2 * n_batches(config, corpus) + 13, crash)  # epoch 3, before step 12 (0-based)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    # Steps 10 and 11 of epoch 3 were trained after the last checkpoint: resuming must replay them.
    resumed, epoch, step, result = resume(config, corpus, tmp_path)
    assert (epoch, step) == (2, 10)
    assert_same_run(resumed, result, uninterrupted)
    rows = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert [row.get("epoch") for row in rows] == [1, 2, 3, None] and "test_perplexity" in rows[3]


def test_a_finished_run_trains_further_with_a_larger_max_max_epoch(corpus, tmp_path, uninterrupted, tiny_config):
    # Nothing but the loop's end depends on max_max_epoch, so 2 epochs and then a third are 3 epochs.
    config = tiny_config(**RESUME_CHANGES)
    run(config.replace(max_max_epoch=2), corpus, save_path=tmp_path)
    resumed, epoch, step, result = resume(config, corpus, tmp_path)
    assert (epoch, step) == (2, 0)
    assert_same_run(resumed, result, uninterrupted)
    rows = [json.loads(line) for line in (tmp_path / METRICS_NAME).read_text().splitlines()]
    assert [row.get("epoch") for row in rows] == [1, 2, None, 3, None]  # (each test pass logged)
    with pytest.raises(checkpoint.CheckpointError, match="has trained 3 epochs, more than max_max_epoch=2"):
        Trainer(config.replace(max_max_epoch=2), corpus, save_path=tmp_path).restore()
    again = Trainer(config, corpus, save_path=tmp_path, log=lambda s: None, progress=False)
    again.restore()
    assert again.position.finished and again.train()["test_perplexity"] == result["test_perplexity"]


def test_restore_refuses_another_config_or_vocabulary(corpus, tmp_path, tiny_config):
    trainer = Trainer(tiny_config(), corpus, save_path=tmp_path, log=lambda s: None, progress=False)
    trainer.save()
    other = Trainer(tiny_config(hidden_size=9, keep_prob=0.5), corpus, save_path=tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"config differs in hidden_size \(8 there, 9 here\), keep_prob \(1.0 there, 0.5 here\)"):
        other.restore()
    renamed = reader.Corpus(corpus.train, corpus.valid, corpus.test, {}, ["x"] + corpus.id_to_word[1:],
                            corpus.paths)
    with pytest.raises(checkpoint.CheckpointError, match="vocabulary differs"):
        Trainer(tiny_config(), renamed, save_path=tmp_path).restore()


def test_restore_refuses_missing_parameters_and_a_misfit_state(corpus, tmp_path, tiny_config):
    trainer = Trainer(tiny_config(), corpus, save_path=tmp_path, log=lambda s: None, progress=False)
    path = trainer.save()
    params, meta, state = checkpoint.load(path)
    del params["softmax_b"]
    checkpoint.save(path, params, meta, state)
    checkpoint.previous_path(path).unlink()
    with pytest.raises(checkpoint.CheckpointError, match="missing softmax_b"):
        Trainer(tiny_config(), corpus, save_path=tmp_path).restore()
    params, meta, _ = checkpoint.load(path)
    params["softmax_b"] = trainer.model.params["softmax_b"]
    checkpoint.save(path, params, meta, [(np.zeros((3, 8), np.float32), np.zeros((3, 8), np.float32))] * 2)
    checkpoint.previous_path(path).unlink()
    with pytest.raises(checkpoint.CheckpointError, match="LSTM state that does not fit"):
        Trainer(tiny_config(), corpus, save_path=tmp_path).restore()


@pytest.mark.parametrize("epoch,step,says", [(0, 10**5, "step 100000, outside this training data's epochs of"),
                                             (0, -1, "step -1, outside this training data's epochs of"),
                                             (-1, 0, r"not a resumable training checkpoint \(epoch -1\)")])
def test_restore_refuses_a_position_outside_the_training_data(corpus, tmp_path, tiny_config, epoch, step, says):
    # A step past the epoch's end (a checkpoint from a longer training file) skipped every batch for ever.
    trainer = Trainer(tiny_config(), corpus, save_path=tmp_path, log=lambda s: None, progress=False)
    path = trainer.save()
    params, meta, state = checkpoint.load(path)
    meta["position"].update(epoch=epoch, step=step)
    checkpoint.save(path, params, meta, state)
    checkpoint.previous_path(path).unlink()
    n = n_batches(tiny_config(), corpus)
    with pytest.raises(checkpoint.CheckpointError, match=says):
        Trainer(tiny_config(), corpus, save_path=tmp_path).restore()
    meta["position"].update(epoch=0, step=n)  # (the last step's checkpoint, taken before the epoch's end)
    checkpoint.save(path, params, meta, state)
    restored = Trainer(tiny_config(), corpus, save_path=tmp_path)
    restored.restore()
    assert (restored.position.epoch, restored.position.step) == (0, n)

def test_a_fresh_run_starts_a_new_metrics_log(corpus, tmp_path, tiny_config):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 99}\n')
    trainer = Trainer(tiny_config(max_max_epoch=1), corpus, save_path=tmp_path, log=lambda s: None,
                      progress=False)
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in rows] == [1, None]  # epoch 1, then the test line; no epoch 99


# ---- NaN and divergence --------------------------------------------------------------------------

def test_nan_parameter_stops_training_and_keeps_the_checkpoint(corpus, tmp_path, tiny_config):
    trainer = Trainer(tiny_config(), corpus, save_path=tmp_path, log=lambda s: None, progress=False,
                      checkpoint_every=1)
    path = trainer.save()
    saved = path.read_bytes()
    trainer.model.params["lstm_1/kernel"][2, 3] = np.nan
    with pytest.raises(TrainingError) as err:
        trainer.train()
    message = str(err.value)
    assert "epoch 1, step 0" in message and "nan" in message and "lstm_1/kernel" in message
    assert "not updated" in message and str(path) in message
    assert path.read_bytes() == saved


def test_nan_gradient_mid_epoch_leaves_last_good_checkpoint(corpus, tmp_path, tiny_config):
    trainer = Trainer(tiny_config(), corpus, save_path=tmp_path, log=lambda s: None, progress=False,
                      checkpoint_every=1)
    inner = trainer.model.loss_and_sparse_grads
    calls = []

    def poisoned(*args, **kwargs):
        cost, grads, state = inner(*args, **kwargs)
        calls.append(1)
        if len(calls) == 23:
            grads["softmax_w"][1, 2] = np.nan
        return cost, grads, state

    trainer.model.loss_and_sparse_grads = poisoned
    with pytest.raises(TrainingError, match="epoch 1, step 22: gradient norm is nan"):
        trainer.train()
    params, meta, _ = checkpoint.load(tmp_path / CHECKPOINT_NAME)
    assert meta["position"]["step"] == 22
    assert all(np.isfinite(a).all() for a in trainer.model.params.values())
    assert same_params(params, trainer.model.params)  # the failed step changed nothing


def test_diverging_training_is_reported_not_a_crash(corpus, tmp_path, tiny_config):
    trainer = Trainer(tiny_config(learning_rate=1e4, max_max_epoch=1), corpus, save_path=tmp_path,
                      log=lambda s: None, progress=False, checkpoint_every=1)
    try:
        result = trainer.train()
    except TrainingError as e:  # stopping is fine...
        assert "epoch 1, step" in str(e)
    else:  # ... and so is finishing with a perplexity that shows the divergence (TF prints inf)
        assert result["history"][0]["train_perplexity"] > 1e6
    params, _, _ = checkpoint.load(tmp_path / CHECKPOINT_NAME)
    assert all(np.isfinite(a).all() for a in params.values())


def test_overflowing_update_never_reaches_a_checkpoint(corpus, tmp_path, tiny_config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # as outside pytest: the overflow only warns
        try:
            trainer = Trainer(tiny_config(learning_rate=1e39), corpus, save_path=tmp_path,
                              log=lambda s: None, progress=False, checkpoint_every=1)
            trainer.train()
        except (ValueError, TrainingError):
            pass  # refusing the config or stopping training are both fine
        else:
            pytest.fail("training with learning_rate=1e39 finished")
    if (tmp_path / CHECKPOINT_NAME).exists():
        params, _, _ = checkpoint.load(tmp_path / CHECKPOINT_NAME)
        assert all(np.isfinite(a).all() for a in params.values()), "a checkpoint holds non-finite weights"
