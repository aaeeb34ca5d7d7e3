"""Exports (ptbfast.export): safetensors bit for bit, ONNX and the PyTorch recipe equal to ptbfast.

Tolerance: ptbfast, onnxruntime and PyTorch all compute in float32, with different summation
orders; over 300 tokens the log-probabilities (magnitude ~4) and states differ by ~1e-6, so the
tests allow 1e-5, max abs, and print the measured difference (pytest -s shows it).
"""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import ptbfast
from ptbfast import checkpoint, export as export_module
from ptbfast.checkpoint import CheckpointError
from ptbfast.configs import Config
from ptbfast.export import export
from ptbfast.model import LSTMLanguageModel

TOLERANCE = 1e-5
DOCS = Path(__file__).resolve().parent.parent / "docs" / "export.md"
WORDS = ["<eos>", "<unk>", "the", "market", "fell"] + [f"w{i}" for i in range(35)]  # V = 40


def needs(name):
    return pytest.importorskip(name, reason=f"{name} is not installed (pip install 'ptbfast[export]')")


def make_checkpoint(path, tie_weights=False, precision="fp32"):
    """A 2-layer H = 12 model with random weights large enough for non-trivial gates, and a
    forget_bias, so that the exports must fold it in."""
    config = Config(vocab_size=len(WORDS), hidden_size=12, num_layers=2, forget_bias=1.0, tie_weights=tie_weights,
                    precision=precision)
    model = LSTMLanguageModel(config.vocab_size, config.hidden_size, config.num_layers, config.forget_bias,
                              init_scale=0.5, seed=7, tie_weights=tie_weights)
    # Values whose bits a float conversion or text round trip would change.
    model.params["softmax_b"][:3] = [-0.0, np.float32(1e-45), np.float32(1 / 3)]
    checkpoint.save(path, model.params, {"config": config.to_dict(), "vocabulary": WORDS})
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def saved(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.npz"
    return make_checkpoint(path, tie_weights=request.param)


def reference(lm, ids, state):
    """ptbfast's next-word log-probabilities (float64 log-softmax of its float32 logits) and state."""
    outputs, state = lm.model.hidden_states(ids, state)
    logits = (outputs @ lm.output_weights() + lm.model.params["softmax_b"]).astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True)), state


def chunks(total, sizes=(1, 7, 50, 13, 29)):
    """Chunk lengths summing to ``total``, cycling through ``sizes``: 1-step chunks included."""
    out, k = [], 0
    while sum(out) < total:
        out.append(min(sizes[k % len(sizes)], total - sum(out)))
        k += 1
    return out


def doc_block(marker):
    """The python block after ``<!-- test: marker -->`` in docs/export.md."""
    match = re.search(rf"<!-- test: {marker} -->\n```python\n(.*?)```", DOCS.read_text(), re.S)
    assert match, f"no block marked {marker} in {DOCS}"
    return match.group(1)


# ---- safetensors --------------------------------------------------------------------------------

def test_safetensors_round_trip_is_bit_exact(saved, tmp_path):
    safetensors_numpy = needs("safetensors.numpy")
    from safetensors import safe_open

    lm = ptbfast.load(saved)
    out = export(saved, "safetensors", tmp_path / "model.safetensors")
    tensors = safetensors_numpy.load_file(out)
    assert set(tensors) == set(lm.model.params)
    assert ("softmax_w" in tensors) == (not lm.config.tie_weights)
    for name, value in lm.model.params.items():
        assert tensors[name].dtype == np.float32 and tensors[name].shape == value.shape
        assert np.array_equal(tensors[name], value) and tensors[name].tobytes() == value.tobytes(), name
    with safe_open(str(out), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "ptbfast"
    assert json.loads(meta["config"]) == lm.config.to_dict()
    assert json.loads(meta["vocabulary"]) == WORDS


# ---- ONNX ---------------------------------------------------------------------------------------

def run_onnx_in_chunks(session, lm, ids):
    """Log-probs of ``ids`` [B, T] fed in chunks, each chunk starting from the state the last returned."""
    batch, layers = ids.shape[0], lm.model.num_layers
    state = {f"{k}_in_{layer}": np.zeros((batch, lm.model.hidden_size), np.float32)
             for layer in range(layers) for k in "ch"}
    names = ["log_probs"] + [f"{k}_out_{layer}" for layer in range(layers) for k in "ch"]
    pieces, start = [], 0
    for size in chunks(ids.shape[1]):
        out = dict(zip(names, session.run(names, {"ids": ids[:, start:start + size], **state})))
        pieces.append(out["log_probs"])
        state = {f"{k}_in_{layer}": out[f"{k}_out_{layer}"] for layer in range(layers) for k in "ch"}
        start += size
    return np.concatenate(pieces, axis=1), [(state[f"c_in_{l}"], state[f"h_in_{l}"]) for l in range(layers)]


def test_onnx_matches_ptbfast_over_chunks_carrying_state(saved, tmp_path):
    onnx = needs("onnx")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (needed to run the graph)")
    lm = ptbfast.load(saved)
    out = export(saved, "onnx", tmp_path / "model.onnx")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert {p.key: p.value for p in model.metadata_props}["vocabulary"] == json.dumps(WORDS)

    ids = np.random.default_rng(0).integers(0, len(WORDS), size=(2, 150))  # 300 tokens
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    log_probs, state = run_onnx_in_chunks(session, lm, ids)
    expected, expected_state = reference(lm, ids, lm.model.initial_state(2))  # all at once
    error = np.abs(log_probs - expected).max()
    state_error = max(np.abs(a - b).max() for pair, ref in zip(state, expected_state) for a, b in zip(pair, ref))
    print(f"\nONNX ({'tied' if lm.config.tie_weights else 'untied'}): log-prob max abs diff {error:.2e}, "
          f"state {state_error:.2e}")
    assert log_probs.shape == (2, 150, len(WORDS)) and log_probs.dtype == np.float32
    assert error <= TOLERANCE and state_error <= TOLERANCE


def test_onnx_tied_graph_reads_the_embedding_transposed(tmp_path):
    needs("onnx")
    out = export(make_checkpoint(tmp_path / "tied.npz", tie_weights=True), "onnx", tmp_path / "tied.onnx")
    import onnx

    graph = onnx.load(str(out)).graph
    assert "softmax_w" not in {i.name for i in graph.initializer}
    assert [i.name for i in graph.initializer].count("embedding") == 1  # stored once
    transposes = [n for n in graph.node if n.op_type == "Transpose" and list(n.input) == ["embedding"]]
    assert len(transposes) == 1
    matmul = next(n for n in graph.node if n.op_type == "MatMul")
    assert matmul.input[1] == transposes[0].output[0]


def test_onnxruntime_snippet_in_docs_scores_like_ptbfast(tmp_path, monkeypatch, capsys):
    needs("onnx")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (needed to run the graph)")
    saved = make_checkpoint(tmp_path / "model.npz")
    export(saved, "onnx", tmp_path / "small.onnx")
    snippet = doc_block("onnxruntime_snippet")
    assert all(line in export_module.__doc__ for line in snippet.splitlines())  # the docstring has it too
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(snippet, namespace)
    capsys.readouterr()
    scores = namespace["log_probs"][np.arange(3), namespace["ids"][0, 1:]]
    expected = ptbfast.load(saved).score("the market fell").log_probs
    assert np.abs(scores - expected).max() <= TOLERANCE


def test_a_bf16_trained_checkpoint_exports_its_fp32_model(tmp_path):
    # The files hold the float32 master weights and the graph computes in float32: their config says
    # so, and they score as the checkpoint loaded in fp32 (loaded as trained, in bf16, it differs
    # by bf16's rounding, ~1e-2 here).
    onnx = needs("onnx")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (needed to run the graph)")
    saved = make_checkpoint(tmp_path / "bf16.npz", precision="bf16")
    out = export(saved, "onnx", tmp_path / "bf16.onnx")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["config"])["precision"] == "fp32"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(3).integers(0, len(WORDS), size=(1, 60))
    fp32 = ptbfast.load(saved, precision="fp32")
    log_probs, _ = run_onnx_in_chunks(session, fp32, ids)
    assert np.abs(log_probs - reference(fp32, ids, fp32.model.initial_state(1))[0]).max() <= TOLERANCE


def test_a_model_without_its_config_or_a_directory_to_write_is_refused(tmp_path):
    needs("onnx")
    lm = ptbfast.load(make_checkpoint(tmp_path / "model.npz"))
    with pytest.raises(ValueError, match="exporting needs the model's config"):
        export_module.onnx_model(ptbfast.LanguageModel(lm.model, lm.id_to_word))
    (tmp_path / "adir").mkdir()
    for overwrite in (False, True):  # (without --overwrite it said "adir exists; pass overwrite=True")
        with pytest.raises(IsADirectoryError, match="adir is a directory: name a file to write"):
            export(tmp_path / "model.npz", "onnx", tmp_path / "adir", overwrite=overwrite)
    assert files_in(tmp_path / "adir") == []
    with pytest.raises(IsADirectoryError, match="^. is a directory"):
        export(tmp_path / "model.npz", "onnx", "")
    # A directory to make where a file is: named ("[Errno 17] File exists: 'model.npz'" said neither).
    with pytest.raises(NotADirectoryError, match=f"cannot make the directory {tmp_path / 'model.npz' / 'sub'}: "
                                                 f"{tmp_path / 'model.npz'} exists and is not a directory"):
        export(tmp_path / "model.npz", "onnx", tmp_path / "model.npz" / "sub" / "m.onnx")

# ---- PyTorch recipe (docs/export.md) ------------------------------------------------------------

def test_torch_recipe(saved, tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed; the recipe in docs/export.md needs it")
    needs("safetensors")
    lm = ptbfast.load(saved)
    out = export(saved, "safetensors", tmp_path / "model.safetensors")
    namespace = {}
    exec(doc_block("torch_recipe"), namespace)  # exactly the code of docs/export.md
    model, words = namespace["load_ptbfast"](str(out))
    assert words == WORDS

    ids = np.random.default_rng(1).integers(0, len(WORDS), size=(2, 150))
    pieces, state, start = [], None, 0
    with torch.no_grad():
        for size in chunks(ids.shape[1]):
            log_probs, state = model(torch.from_numpy(ids[:, start:start + size]), state)
            pieces.append(log_probs.numpy())
            start += size
    expected, expected_state = reference(lm, ids, lm.model.initial_state(2))
    error = np.abs(np.concatenate(pieces, axis=1) - expected).max()
    h, c = (s.numpy() for s in state)  # PyTorch: (h, c), each [L, B, H]
    state_error = max(max(np.abs(c[l] - ref_c).max(), np.abs(h[l] - ref_h).max())
                      for l, (ref_c, ref_h) in enumerate(expected_state))
    print(f"\nPyTorch ({'tied' if lm.config.tie_weights else 'untied'}): log-prob max abs diff {error:.2e}, "
          f"state {state_error:.2e}")
    assert error <= TOLERANCE and state_error <= TOLERANCE


# ---- bad inputs and atomic writes ---------------------------------------------------------------

def files_in(directory):
    return sorted(p.name for p in Path(directory).iterdir())


def test_unknown_format_names_the_choices(tmp_path):
    saved = make_checkpoint(tmp_path / "model.npz")
    with pytest.raises(ValueError, match="'pt'.*safetensors, onnx"):
        export(saved, "pt", tmp_path / "model.pt")
    assert files_in(tmp_path) == ["model.npz"]


def test_missing_checkpoint_raises_checkpoint_error_naming_it(tmp_path):
    needs("safetensors.numpy")
    missing = tmp_path / "nothing.npz"
    with pytest.raises(CheckpointError, match=re.escape(str(missing))):
        export(missing, "safetensors", tmp_path / "out.safetensors")
    assert files_in(tmp_path) == []


def test_truncated_checkpoint_raises_checkpoint_error_naming_it(tmp_path):
    needs("onnx")
    saved = make_checkpoint(tmp_path / "model.npz")
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(saved))):
        export(saved, "onnx", tmp_path / "out.onnx")
    assert files_in(tmp_path) == ["model.npz"]


def test_existing_output_is_kept_without_overwrite_and_replaced_with_it(tmp_path):
    needs("safetensors.numpy")
    saved = make_checkpoint(tmp_path / "model.npz")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(saved, "safetensors", out)
    assert out.read_bytes() == b"keep me"
    assert export(saved, "safetensors", out, overwrite=True) == out
    assert out.read_bytes()[:8] != b"keep me"[:8] and out.stat().st_size > 1000
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600
    assert files_in(tmp_path) == ["model.npz", "out.safetensors"]


def test_a_failure_mid_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    saved = make_checkpoint(tmp_path / "model.npz")
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old")

    real_write_atomically = export_module.write_atomically

    def fail_half_way(path, write):
        def half(f):
            f.write(b"half a model")
            raise OSError("disk full")
        return real_write_atomically(path, half)

    monkeypatch.setattr(export_module, "_import", lambda name: None)  # no package needed for this
    monkeypatch.setattr(export_module, "write_atomically", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        export(saved, "onnx", out, overwrite=True)
    assert files_in(tmp_path) == ["model.npz", "out.onnx"] and out.read_bytes() == b"old"


@pytest.mark.parametrize("fmt, package", [("safetensors", "safetensors.numpy"), ("onnx", "onnx")])
def test_missing_package_names_the_extra(tmp_path, monkeypatch, fmt, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    saved = make_checkpoint(tmp_path / "model.npz")
    with pytest.raises(ImportError, match=re.escape("pip install 'ptbfast[export]'")):
        export(saved, fmt, tmp_path / f"out.{fmt}")
    assert files_in(tmp_path) == ["model.npz"]
