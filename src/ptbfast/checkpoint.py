"""Checkpoints: one ``.npz`` file with parameters, config, vocabulary, position and RNG state.

Why ``.npz`` rather than safetensors: it needs nothing beyond NumPy, it loads without pickle
(``allow_pickle=False``), it stores the integer and text metadata a resumable trainer needs next to
the float32 weights, and every member carries a CRC-32 that is verified on load, so a corrupt or
truncated file is detected rather than read as garbage. Tensor names are TF's (``lstm_0/kernel``).

Files are written atomically: to a temporary file in the same directory, flushed to disk, then
renamed over the target, so a crash at any moment leaves either the old or the new checkpoint.
The checkpoint being replaced is kept as ``<name>.prev`` (linked there before the new file is
renamed over it, so the name never goes missing). Only resuming training falls back to
it (:func:`load_model_or_previous`, when the newest file is missing or corrupt: a disk error after
the write, say); a file named to evaluate or use a model is that file or an error, never another.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptbfast.configs import Config
from ptbfast.model import LSTMLanguageModel

FORMAT = "ptbfast-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated or not a ptbfast checkpoint."""


def save(path, params: dict, meta: dict, state=None) -> Path:
    """Write ``params`` (name -> array), JSON-able ``meta`` and an optional LSTM ``state`` atomically."""
    path = Path(path)
    arrays = {f"param/{name}": np.ascontiguousarray(a) for name, a in params.items()}
    for layer, (c, h) in enumerate(state or []):
        arrays[f"state/{layer}/c"] = c
        arrays[f"state/{layer}/h"] = h
    meta = dict(meta, format=FORMAT)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return write_atomically(path, lambda f: np.savez(f, **arrays), keep_previous=True)


def write_atomically(path, write, keep_previous: bool = False) -> Path:
    """Create ``path`` with ``write(binary file)``: into a temporary file in the same directory,
    flushed to disk, then renamed over ``path``, so that a crash or an exception at any moment
    leaves either the old file or the new one, never a part (and no temporary file). With
    ``keep_previous`` the file it replaces becomes ``<name>.prev``."""
    path = Path(path)
    if path.is_dir():  # (os.replace would fail naming the temporary file)
        raise IsADirectoryError(f"{path} is a directory: name a file to write")
    make_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp made it 0600; this is an ordinary file
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            _keep_as_previous(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def make_directory(directory: Path) -> None:
    """``directory`` and its parents; a clear error where something that is not a directory is in the
    way ("File exists" named neither which nor why)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (directory, *directory.parents) if os.path.lexists(p) and not p.is_dir()),
                        directory)
        raise NotADirectoryError(f"cannot make the directory {directory}: {blocking} exists and is not a "
                                 "directory") from None


def _keep_as_previous(path: Path) -> None:
    """Make ``<name>.prev`` a copy of ``path`` while ``path`` stays in place: a hard link, or where the
    file system has none a copy renamed into place. (Renaming ``path`` to ``.prev`` before renaming
    the new file over it left a moment without ``path``: a run killed then had no checkpoint under
    its name, seen once when SIGKILL landed between the two renames.)"""
    previous = previous_path(path)
    link = previous.with_name(previous.name + ".link")
    try:
        if link.exists():
            link.unlink()
        try:
            os.link(path, link)
        except OSError:
            shutil.copy2(path, link)
        os.replace(link, previous)
    except BaseException:
        if link.exists():
            link.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def previous_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".prev")


def load(path):
    """``(params, meta, state)`` from a checkpoint; :class:`CheckpointError` if it is unusable."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory: name the checkpoint file in it "
                              f"({path / 'checkpoint.npz'}, as train --save-path writes it)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # every .npz is a zip file; anything else is not a checkpoint at all
        kind = "an empty file" if not magic else "not a .npz file"
        raise CheckpointError(f"{path} is not a ptbfast checkpoint ({kind})")
    try:
        with open(path, "rb") as f:  # our handle, so a file np.load rejects is still closed
            data = np.load(f, allow_pickle=False)  # (a zip file, checked above: an NpzFile)
            with data:
                arrays = {name: data[name] for name in data.files}  # reading each member checks its CRC
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e})") from None
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):
        raise CheckpointError(f"checkpoint {path} holds members that are not arrays")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except KeyError:
        raise CheckpointError(f"{path} is not a ptbfast checkpoint (a .npz file without ptbfast's metadata)") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path} has no readable metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not a {FORMAT} file (format: {found!r})")
    params = {name[len("param/"):]: a for name, a in arrays.items() if name.startswith("param/")}
    try:
        layers = sorted({int(name.split("/")[1]) for name in arrays if name.startswith("state/")})
        state = [(arrays[f"state/{layer}/c"], arrays[f"state/{layer}/h"]) for layer in layers] or None
    except (ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} has a malformed LSTM state ({type(e).__name__}: {e})") from None
    return params, meta, state


def check_params(params: dict, expected: dict, path) -> None:
    """:class:`CheckpointError` unless ``params`` has exactly the names and shapes of ``expected``
    (a freshly built model's parameters) and only finite floating-point values."""
    problems = []
    missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected {', '.join(extra)}")
    for name in sorted(set(params) & set(expected)):
        value = params[name]
        if value.shape != expected[name].shape:
            problems.append(f"{name} has shape {value.shape}, the model {expected[name].shape}")
        elif value.dtype.kind != "f":
            problems.append(f"{name} holds {value.dtype}, not floats")
        elif not np.isfinite(value).all():
            problems.append(f"{name} holds NaN or Inf")
        elif value.dtype.itemsize > 4 and not (np.abs(value) <= np.finfo(np.float32).max).all():
            problems.append(f"{name} holds values beyond float32's range (they would load as Inf)")
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {'; '.join(problems)}")


@dataclass
class SavedModel:
    """A checkpoint's model, checked against its config, with everything else it holds."""

    model: LSTMLanguageModel
    config: Config
    vocabulary: list
    meta: dict          # the whole metadata (training position, RNG state, ...)
    state: list | None  # the LSTM state carried by training, [(c, h)] per layer, or None
    path: Path          # the file it came from


def load_model(path, precision: str | None = None) -> SavedModel:
    """The model in the checkpoint ``path``, and nothing else: :class:`CheckpointError` naming the
    file if it is missing, truncated, corrupt, not a ptbfast checkpoint, or holds no usable model.
    ``precision`` ("fp32", "bf16"; default: the one it was trained in) is the model's from now on:
    the parameters are float32 either way, so a bf16-trained model runs in fp32 and back."""
    path = Path(path)
    params, meta, state = load(path)
    try:
        config = Config.from_dict(meta["config"])
        vocabulary = meta["vocabulary"]
        if not isinstance(vocabulary, list) or not all(isinstance(w, str) for w in vocabulary):
            raise TypeError("the vocabulary is not a list of words")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has no usable config and vocabulary "
                              f"({type(e).__name__}: {e})") from None
    model = LSTMLanguageModel.from_config(config, precision)
    check_params(params, model.params, path)
    model.params = {name: np.array(value, dtype=np.float32) for name, value in params.items()}
    return SavedModel(model, config, vocabulary, meta, state, path)


def load_model_or_previous(path) -> tuple[SavedModel, str | None]:
    """For resuming training only: the model in ``path``, or in ``path.prev`` if ``path`` is missing
    or unusable. Returns ``(saved, why)``, ``why`` saying why ``path`` was skipped (None if it was
    not); the error names both files when neither loads."""
    try:
        return load_model(path), None
    except CheckpointError as newest:
        try:
            return load_model(previous_path(path)), str(newest)
        except CheckpointError as previous:
            raise CheckpointError(f"{newest}; and the previous one: {previous}") from None
