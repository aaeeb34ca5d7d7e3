"""Export a trained checkpoint for use without ptbfast: safetensors (the weights) or ONNX (the model).

    from ptbfast.export import export
    export("runs/small/checkpoint.npz", "safetensors", "small.safetensors")
    export("runs/small/checkpoint.npz", "onnx", "small.onnx")

Both files carry the config and the vocabulary as metadata ("config", "vocabulary": JSON strings),
and the float32 master weights: a checkpoint trained in bf16 exports as its fp32 model.

- ``safetensors``: every parameter as float32 under TF's name (``embedding``, ``lstm_0/kernel``,
  ``lstm_0/bias``, ..., ``softmax_w``, ``softmax_b``; no ``softmax_w`` with tied weights). Loads
  with ``safetensors.numpy.load_file``; docs/export.md has a tested recipe for ``torch.nn.LSTM``.
- ``onnx``: the inference graph (opset 17). Inputs ``ids`` int64 [batch, steps] and, per layer l,
  ``c_in_{l}``, ``h_in_{l}`` float32 [batch, H]; outputs ``log_probs`` [batch, steps, V] (natural
  log of the next word's probability at each position) and ``c_out_{l}``, ``h_out_{l}``, to feed
  back as the next chunk's state. Scoring a sentence with onnxruntime alone::

    import json, numpy as np, onnxruntime as ort
    sess = ort.InferenceSession("small.onnx")
    meta = sess.get_modelmeta().custom_metadata_map
    words, config = json.loads(meta["vocabulary"]), json.loads(meta["config"])
    ids = np.array([[words.index(w) for w in "<eos> the market fell".split()]])
    zero = np.zeros((1, config["hidden_size"]), np.float32)
    state = {f"{k}_in_{l}": zero for l in range(config["num_layers"]) for k in "ch"}
    log_probs = sess.run(["log_probs"], {"ids": ids, **state})[0][0]
    print(log_probs[np.arange(ids.shape[1] - 1), ids[0, 1:]])  # log p of each word after <eos>

The output file is written to a temporary file in its directory and renamed into place, so it is
never seen half-written.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from ptbfast.checkpoint import write_atomically
from ptbfast.lm import LanguageModel, load

FORMATS = ("safetensors", "onnx")
OPSET = 17        # ONNX 1.12 (2022): old enough for any recent onnxruntime, and has all we use
IR_VERSION = 8    # the IR version that goes with opset 17; newer readers all accept it
EXTRA = "pip install 'ptbfast[export]'"
_PACKAGES = {"safetensors": "safetensors.numpy", "onnx": "onnx"}


def export(checkpoint_path, fmt: str, out_path, overwrite: bool = False) -> Path:
    """Write the model in ``checkpoint_path`` to ``out_path`` in format ``fmt``; returns ``out_path``.

    ``FileExistsError`` if ``out_path`` exists and not ``overwrite``; ``ValueError`` for an unknown
    ``fmt``; :class:`ptbfast.checkpoint.CheckpointError` for a missing or corrupt checkpoint;
    ``ImportError`` when the format's package is not installed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _import(_PACKAGES[fmt])  # before reading the checkpoint: a missing package is the first thing said
    write = {"safetensors": _safetensors_bytes, "onnx": _onnx_bytes}[fmt]
    out_path = Path(out_path)
    if out_path.is_dir():  # (a directory, "" and "." among them: not a file that --overwrite could replace)
        raise IsADirectoryError(f"{out_path} is a directory: name a file to write")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists; pass overwrite=True (--overwrite) to replace it")
    lm = load(checkpoint_path, precision="fp32")  # (what both formats hold: see _metadata)
    return write_atomically(out_path, lambda f: f.write(write(lm)))


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"exporting needs the {name.split('.')[0]} package: {EXTRA}") from e


def _metadata(lm: LanguageModel) -> dict:
    """The string metadata both formats carry. Its config says precision "fp32": the weights are the
    float32 masters and the ONNX graph computes in float32, whatever precision the model trained in."""
    if lm.config is None:
        raise ValueError("exporting needs the model's config (LanguageModel(model, words, config), or "
                         "ptbfast.load of a checkpoint)")
    config = dict(lm.config.to_dict(), precision="fp32")
    return {"format": "ptbfast", "config": json.dumps(config), "vocabulary": json.dumps(lm.id_to_word)}


def _safetensors_bytes(lm: LanguageModel) -> bytes:
    st = _import("safetensors.numpy")
    tensors = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in lm.model.params.items()}
    return st.save(tensors, metadata=_metadata(lm))


# ---- ONNX -------------------------------------------------------------------------------------

def _onnx_gates(a: np.ndarray) -> np.ndarray:
    """TF's gate blocks i, j, f, o along axis 0 -> ONNX LSTM's i, o, f, c (c is TF's j)."""
    i, j, f, o = np.split(a, 4, axis=0)
    return np.concatenate([i, o, f, j])


def onnx_model(lm: LanguageModel):
    """The inference graph as an ``onnx.ModelProto`` (see the module docstring for its interface)."""
    onnx = _import("onnx")
    from onnx import TensorProto, helper, numpy_helper

    p = lm.model.params
    H, V, L = lm.model.hidden_size, lm.model.vocab_size, lm.model.num_layers
    inits = [numpy_helper.from_array(p["embedding"], "embedding"),
             numpy_helper.from_array(p["softmax_b"], "softmax_b"),
             numpy_helper.from_array(np.array([0], np.int64), "axis_0"),
             numpy_helper.from_array(np.array([1], np.int64), "axis_1")]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "steps"])]
    outputs = [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", "steps", V])]
    nodes = [helper.make_node("Gather", ["embedding", "ids"], ["embedded"]),                   # [B, T, H]
             helper.make_node("Transpose", ["embedded"], ["x_0"], perm=[1, 0, 2])]           # time-major
    for layer in range(L):
        kernel = p[f"lstm_{layer}/kernel"]  # [In + H, 4H]; In == H in this model
        gates_t = _onnx_gates(kernel.T)     # [4H, In + H], rows i, o, f, c
        bias = p[f"lstm_{layer}/bias"].copy()
        bias[2 * H:3 * H] += np.float32(lm.model.forget_bias)  # ONNX has no forget_bias: fold it in
        bias = np.concatenate([_onnx_gates(bias), np.zeros(4 * H, np.float32)])  # ONNX: Wb + Rb; TF: one
        inits += [numpy_helper.from_array(gates_t[None, :, :H].copy(), f"W_{layer}"),
                  numpy_helper.from_array(gates_t[None, :, H:].copy(), f"R_{layer}"),
                  numpy_helper.from_array(bias[None], f"B_{layer}")]
        for k in "ch":
            inputs.append(helper.make_tensor_value_info(f"{k}_in_{layer}", TensorProto.FLOAT, ["batch", H]))
            outputs.append(helper.make_tensor_value_info(f"{k}_out_{layer}", TensorProto.FLOAT, ["batch", H]))
            nodes.append(helper.make_node("Unsqueeze", [f"{k}_in_{layer}", "axis_0"], [f"{k}0_{layer}"]))
        # Default activations (Sigmoid, Tanh, Tanh) and no peepholes: TF BasicLSTMCell's maths.
        nodes += [helper.make_node("LSTM", [f"x_{layer}", f"W_{layer}", f"R_{layer}", f"B_{layer}", "",
                                            f"h0_{layer}", f"c0_{layer}"],
                                   [f"y_{layer}", f"yh_{layer}", f"yc_{layer}"], hidden_size=H),
                  helper.make_node("Squeeze", [f"y_{layer}", "axis_1"], [f"x_{layer + 1}"]),  # [T, B, H]
                  helper.make_node("Squeeze", [f"yh_{layer}", "axis_0"], [f"h_out_{layer}"]),
                  helper.make_node("Squeeze", [f"yc_{layer}", "axis_0"], [f"c_out_{layer}"])]
    if lm.model.tie_weights:  # the file holds the embedding once; the graph reads it transposed
        nodes.append(helper.make_node("Transpose", ["embedding"], ["output_w"], perm=[1, 0]))
    else:
        inits.append(numpy_helper.from_array(p["softmax_w"], "output_w"))
    nodes += [helper.make_node("Transpose", [f"x_{L}"], ["top"], perm=[1, 0, 2]),           # [B, T, H]
              helper.make_node("MatMul", ["top", "output_w"], ["logits_w"]),
              helper.make_node("Add", ["logits_w", "softmax_b"], ["logits"]),
              helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1)]
    graph = helper.make_graph(nodes, "ptbfast", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="ptbfast")
    helper.set_model_props(model, _metadata(lm))
    onnx.checker.check_model(model)
    return model


def _onnx_bytes(lm: LanguageModel) -> bytes:
    return onnx_model(lm).SerializeToString()
