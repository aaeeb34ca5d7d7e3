"""Using a trained model: prediction, generation, scoring, embeddings, plots (ptbfast.lm), and
loading exactly the checkpoint named (ptbfast.load)."""

import importlib.util
import io
import json
import math
import re
import warnings

import numpy as np
import pytest

import ptbfast
from ptbfast import checkpoint
from ptbfast.lm import LanguageModel
from ptbfast.reader import EOS
from ptbfast.model import LSTMLanguageModel
from ptbfast.train import CHECKPOINT_NAME

from helpers import DAMAGED_CHECKPOINTS, damaged_checkpoint, same_params

WORDS = ["the", "<unk>", "<eos>", "a", "b", "c", "monday", "tuesday", "one", "two"]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def lm():
    model = LSTMLanguageModel(len(WORDS), 6, 2, init_scale=0.5, seed=3)
    return LanguageModel(model, WORDS)


def test_next_word_probs_are_sorted_probabilities(lm):
    top = lm.next_word_probs("the a", k=4)
    assert len(top) == 4 and all(w in WORDS for w, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    everything = lm.next_word_probs("the a", k=100)  # k larger than the vocabulary
    assert len(everything) == len(WORDS)
    assert sum(p for _, p in everything) == pytest.approx(1.0, rel=1e-6)


def test_probabilities_equal_the_training_loss(lm):
    # -log p(word | context) from the API must equal the model's TF cost on the same sequence.
    ids = np.array([[2, 0, 3, 4]])  # <eos> the a b
    cost, _ = lm.model.loss(ids[:, :-1], ids[:, 1:], lm.model.initial_state(1))
    score = lm.score("the a b")
    assert -score.log_probs[1:].sum() == pytest.approx(cost - (-score.log_probs[0]), rel=1e-5)
    assert -score.log_probs.sum() == pytest.approx(cost, rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(cost / 3), rel=1e-5)
    p_b = dict(lm.next_word_probs("the a", k=len(WORDS)))["b"]
    assert math.log(p_b) == pytest.approx(score.log_probs[2], rel=1e-5)


@pytest.fixture(params=["auto", "generic", "sgemm"])
def bf16_products(request):
    """The bf16 products on auto, on the generic twin (which reads weights packed once) and on SGEMM
    (which reads them rounded in float32): the three run on every CPU."""
    before = ptbfast.ops.bf16_products()
    ptbfast.ops.set_bf16_products(request.param)
    yield request.param
    ptbfast.ops.set_bf16_products(before)


@pytest.mark.filterwarnings("ignore::ptbfast.precision.Bf16PerformanceWarning")
def test_a_bf16_model_scores_with_the_arithmetic_of_its_loss(bf16_products):
    # bf16 rounds the output weights for the product, in scoring as in the loss (h is rounded as
    # the LSTM makes it), so the two agree to float32 summation. Scoring multiplies the weights as
    # evaluation does, frozen (packed once where the CPU's bf16 kernels read them packed).
    model = LSTMLanguageModel(len(WORDS), 6, 2, init_scale=0.5, seed=3, precision="bf16")
    bf16_lm = LanguageModel(model, WORDS)
    ids = np.array([[2, 0, 3, 4, 5, 1]])
    with model.frozen():
        cost, _ = model.loss(ids[:, :-1], ids[:, 1:], model.initial_state(1))
    assert -bf16_lm.score("the a b c <unk>").log_probs.sum() == pytest.approx(cost, rel=1e-5)


@pytest.mark.filterwarnings("ignore::ptbfast.precision.Bf16PerformanceWarning")
def test_bf16_generation_packs_the_output_weights_once(bf16_products, monkeypatch):
    # Where the products' kernel reads weights packed (the generic twin; auto on a CPU with bf16
    # instructions), generation packs the output weights once for all its words, in bf16: half the
    # bytes a word reads of a rounded float32 copy. SGEMM reads them rounded.
    packs = []
    real = ptbfast.ops.pack_bf16
    monkeypatch.setattr(ptbfast.ops, "pack_bf16", lambda b, kernel="auto": packs.append(kernel) or real(b, kernel))
    model = LSTMLanguageModel(len(WORDS), 6, 2, init_scale=0.5, seed=3, precision="bf16")
    text = LanguageModel(model, WORDS).generate("the a", words=5, seed=0)
    assert len(text.split()) <= 5
    kernel = ptbfast.ops.bf16_product_kernel(1 << 20, len(WORDS), 6)  # (one row on it, or beside AMX on AVX512-BF16)
    assert packs == ([ptbfast.ops.bf16_kernel_for_rows(kernel, 1)] if kernel in ptbfast.ops.BF16_PACKED_B_KERNELS
                     else [])
    assert (packs == ["generic"]) == (bf16_products == "generic")


def test_unknown_words_map_to_unk_with_a_warning(lm):
    with pytest.warns(UserWarning, match="zebra"):
        ids = lm.encode("the zebra a")
    assert ids.tolist() == [0, 1, 3]
    with pytest.warns(UserWarning):
        assert lm.score("zebra").words == ["<unk>"]


def test_empty_prompt_and_text(lm):
    assert len(lm.next_word_probs("", k=3)) == 3
    assert len(lm.generate("", words=5, seed=0).split()) <= 5
    empty = lm.score("")
    assert empty.words == [] and math.isnan(empty.perplexity)
    assert lm.generate("the", words=0) == ""


def test_generation_is_seeded_and_top_k_1_is_greedy(lm):
    assert lm.generate("the", words=20, seed=5) == lm.generate("the", words=20, seed=5)
    greedy = lm.generate("the", words=6, top_k=1, seed=1).replace("\n", " <eos> ").split()
    context = "the"
    for word in greedy:  # each greedy word is the argmax given the text so far
        (best, p_best), (second, p_second) = lm.next_word_probs(context, k=2)
        # (a near tie may fall either way: generation's steps and a whole context's call multiply
        # in different orders, on different products where the one-row loops run)
        assert word == best or (word == second and p_best - p_second <= 1e-5 * p_best)
        context += " " + word


def test_a_tiny_temperature_is_greedy_and_a_huge_one_still_samples(lm):
    greedy = lm.generate("the", words=8, top_k=1, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no overflow on the way)
        assert lm.generate("the", words=8, temperature=1e-300, seed=2) == greedy
        assert len(lm.generate("the", words=8, temperature=1e300, seed=2).replace("\n", " x ").split()) == 8


def test_generation_is_incremental(lm, monkeypatch):
    calls = []
    real = lm.model.hidden_states
    monkeypatch.setattr(lm.model, "hidden_states", lambda x, s: calls.append(np.shape(x)) or real(x, s))
    lm.generate("the a b", words=30, seed=0)
    assert calls[0] == (1, 4)                      # <eos> + prompt, once
    assert calls[1:] == [(1, 1)] * 30              # then one single step per word


def test_bad_arguments(lm):
    with pytest.raises(ValueError):
        lm.generate("the", words=-1)
    for temperature in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            lm.generate("the", temperature=temperature)
    with pytest.raises(ValueError):
        lm.generate("the", top_k=0)
    with pytest.raises(ValueError):
        lm.next_word_probs("the", k=0)
    with pytest.raises(KeyError, match="zebra"):
        lm.nearest("zebra")
    with pytest.raises(ValueError, match="space"):
        lm.vectors("middle")
    # Non-integers name the argument (they reached NumPy's partition and slicing before).
    for call, says in ((lambda: lm.generate("the", top_k=2.5), "top_k must be an integer, got 2.5"),
                       (lambda: lm.generate("the", words=1.5), "words must be an integer"),
                       (lambda: lm.next_word_probs("the", k=2.5), "k must be an integer"),
                       (lambda: lm.nearest("one", k="3"), "k must be an integer"),
                       (lambda: lm.nearest("one", k=True), "k must be an integer, got True"),
                       (lambda: lm.score(None), "text must be a str, got NoneType")):
        with pytest.raises(TypeError, match=says):
            call()
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        lm.generate("the", seed=-1)


def test_generated_text_has_a_newline_for_each_eos_and_no_space_beside_it(lm):
    texts = [lm.generate("the", words=12, seed=seed) for seed in range(20)]
    assert any("\n" in t for t in texts)  # (<eos> is one of the 10 words: some of 240 draws are it)
    for text in texts:
        assert " \n" not in text and "\n " not in text and "  " not in text and EOS not in text
        assert len(text.replace("\n", f" {EOS} ").split()) == 12  # every word, each <eos> a newline


def test_nearest_and_analogy(lm):
    near = lm.nearest("monday", k=3)
    assert len(near) == 3 and "monday" not in [w for w, _ in near]
    sims = [s for _, s in near]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    v = lm.vectors()
    expected = v @ v[6] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[6]))
    expected[6] = -np.inf
    assert near[0][0] == WORDS[int(np.argmax(expected))]
    assert len(lm.nearest("monday", k=100)) == len(WORDS) - 1  # k larger than the vocabulary
    assert len(lm.nearest("one", k=2, space="output")) == 2
    result = lm.analogy("monday", "tuesday", "one", k=3)
    assert {w for w, _ in result}.isdisjoint({"monday", "tuesday", "one"})
    query = v[6] - v[7] + v[8]  # monday - tuesday + one, by cosine over the other words
    expected = v @ query / (np.linalg.norm(v, axis=1) * np.linalg.norm(query))
    expected[[6, 7, 8]] = -np.inf
    assert [w for w, _ in result] == [WORDS[i] for i in np.argsort(-expected, kind="stable")[:3]]
    assert [s for _, s in result] == pytest.approx(np.sort(expected)[::-1][:3], rel=1e-5)
    for k in (0, -1):  # (-1 returned all but one word, as a slice would)
        for call in (lambda: lm.nearest("one", k=k), lambda: lm.analogy("monday", "tuesday", "one", k=k)):
            with pytest.raises(ValueError, match=f"k must be >= 1, got {k}"):
                call()


def test_load_from_checkpoint(tmp_path, lm):
    meta = {"config": {"vocab_size": len(WORDS), "hidden_size": 6, "num_layers": 2, "forget_bias": 0.0},
            "vocabulary": WORDS}
    path = checkpoint.save(tmp_path / "c.npz", lm.model.params, meta)
    loaded = ptbfast.load(path)
    assert loaded.next_word_probs("the a", k=3) == lm.next_word_probs("the a", k=3)


@pytest.mark.parametrize("words, says", [(["a", "b", "a"], "holds 'a' more than once"),
                                         (["a", 3], "got 3"), (["a", ""], "got ''"), (["a", "b c"], "got 'b c'"),
                                         (["a\t"], "got 'a\\t'")])
def test_a_vocabulary_of_words_encode_could_not_find_is_refused(words, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        LanguageModel(LSTMLanguageModel(5, 2, 1), words)


def test_load_fills_missing_config_fields_and_warns_on_unknown_ones(tmp_path, lm):
    meta = {"config": {"vocab_size": len(WORDS), "hidden_size": 6, "num_layers": 2, "from_the_future": 1},
            "vocabulary": WORDS}
    path = checkpoint.save(tmp_path / "c.npz", lm.model.params, meta)
    with pytest.warns(UserWarning, match="from_the_future"):
        loaded = ptbfast.load(path)
    assert loaded.config.num_steps == 20 and loaded.config.forget_bias == 0.0  # defaults


@pytest.mark.parametrize("break_it, message", [
    (lambda p, m: p.pop("lstm_1/kernel"), "missing lstm_1/kernel"),
    (lambda p, m: p.update(softmax_b=np.zeros(3, np.float32)), "softmax_b has shape"),
    (lambda p, m: m.pop("config"), "no usable config"),
    (lambda p, m: m.pop("vocabulary"), "no usable config and vocabulary"),
    (lambda p, m: m["config"].update(hidden_size="six"), "no usable config"),
    (lambda p, m: m["config"].update(hidden_size="6"), r"config.hidden_size must be an int, got '6'"),
    (lambda p, m: m["config"].update(tie_weights="no"), "config.tie_weights must be a bool"),
    (lambda p, m: m.update(vocabulary="the<unk>"), "the vocabulary is not a list of words"),  # (not its letters)
    (lambda p, m: m.update(vocabulary=[*WORDS[:-1], 7]), "the vocabulary is not a list of words"),
])
def test_load_rejects_incomplete_checkpoints(tmp_path, lm, break_it, message):
    params = dict(lm.model.params)
    meta = {"config": {"vocab_size": len(WORDS), "hidden_size": 6, "num_layers": 2}, "vocabulary": WORDS}
    break_it(params, meta)
    path = checkpoint.save(tmp_path / "c.npz", params, meta)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        ptbfast.load(path)


# ---- a named checkpoint is that file or an error, never the checkpoint.npz.prev beside it -------------

@pytest.mark.parametrize("load", [ptbfast.load, LanguageModel.load], ids=["ptbfast.load", "LanguageModel.load"])
@pytest.mark.parametrize("kind", list(DAMAGED_CHECKPOINTS))
def test_load_of_an_unusable_file_is_an_error_never_the_previous_one(trained_run, tmp_path, kind, load):
    path, says = damaged_checkpoint(tmp_path, trained_run, kind)
    assert load(checkpoint.previous_path(path)).next_word_probs("w01", k=1)  # a good .prev sits beside it
    with pytest.raises(checkpoint.CheckpointError) as err:
        load(path)
    message = str(err.value)
    assert str(path) in message and says in message and ".prev" not in message


def test_load_reads_the_named_file(trained_run):
    newest = trained_run / CHECKPOINT_NAME
    previous = checkpoint.previous_path(newest)
    for path in (newest, previous):
        params, _, _ = checkpoint.load(path)
        assert same_params(ptbfast.load(path).model.params, params)
    assert not same_params(ptbfast.load(newest).model.params, ptbfast.load(previous).model.params)


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="plots need matplotlib (pip install 'ptbfast[plot]')")
def test_plots_are_written(lm, tmp_path):
    from ptbfast.plots import plot_embeddings, plot_training_curves
    methods = plot_embeddings(lm, tmp_path / "emb.png", n_words=10)
    assert "PCA" in methods and (tmp_path / "emb.png").stat().st_size > 1000
    log = tmp_path / "metrics.jsonl"
    rows = [{"epoch": e, "train_perplexity": 100 / e, "valid_perplexity": 120 / e, "train_wps": 5000} for e in (1, 2)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + json.dumps({"test_perplexity": 50}) + "\n")
    plot_training_curves(log, tmp_path / "new" / "dirs" / "curves.png")  # (missing directories are made)
    assert (tmp_path / "new" / "dirs" / "curves.png").stat().st_size > 1000
    in_memory = io.BytesIO()  # (savefig takes a file object too)
    plot_training_curves(log, in_memory)
    assert in_memory.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.jsonl").write_bytes(b'{"epoch": 1}\n\xe6\x00\n')
    with pytest.raises(ValueError, match=r"bad.jsonl is not a metrics.jsonl log: not UTF-8 text \(byte 13\)"):
        plot_training_curves(tmp_path / "bad.jsonl", tmp_path / "x.png")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        plot_training_curves(tmp_path / "bad.jsonl", tmp_path / "x.png")
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + "\n7\n")
    with pytest.raises(ValueError, match="bad.jsonl:2 is not a JSON object"):
        plot_training_curves(tmp_path / "bad.jsonl", tmp_path / "x.png")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"epoch": 1, "train_perplexity": 9, "valid_perplexity": "9"}))
    with pytest.raises(ValueError, match="bad.jsonl:1: the epoch line lacks valid_perplexity, train_wps"):
        plot_training_curves(tmp_path / "bad.jsonl", tmp_path / "x.png")
    for n_words, left in ((1, 1), (3, 1), (4, 2)):  # ("the", then <unk> and <eos> are left out, then "a")
        with pytest.raises(ValueError, match=f"at least 3 words: the {n_words} most frequent leave {left} "):
            plot_embeddings(lm, tmp_path / "few.png", n_words=n_words)
    assert not (tmp_path / "few.png").exists()


def test_pca_recovers_the_dominant_directions():
    from ptbfast.plots import pca_2d
    rng = np.random.default_rng(0)
    points = rng.standard_normal((50, 2)) * [10, 3]
    embedded = points @ np.linalg.qr(rng.standard_normal((5, 5)))[0][:2]  # rotate into 5-D
    xy = pca_2d(embedded)
    # The data lies in a plane: its 2-D PCA map keeps every pairwise distance.
    def distances(a):
        return np.linalg.norm(a[:, None] - a[None], axis=-1)
    np.testing.assert_allclose(distances(xy), distances(points), atol=1e-9)
    assert xy[:, 0].var() > xy[:, 1].var()  # first axis = largest variance
