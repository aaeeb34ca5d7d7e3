"""Checkpoint files: exact round trip, atomic writes, and a clear CheckpointError for bad files."""

import gc
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from ptbfast import checkpoint
from ptbfast.checkpoint import FORMAT, CheckpointError

UNPICKLED = []


def _record_unpickling(tag):
    UNPICKLED.append(tag)
    return tag


class Canary:
    """Unpickling this object calls _record_unpickling: a load that unpickles would be seen."""

    def __reduce__(self):
        return (_record_unpickling, ("unpickled",))


def sample(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "embedding": rng.standard_normal((40, 16)).astype(np.float32),
        "lstm_0/kernel": rng.standard_normal((32, 64)).astype(np.float32),
        "lstm_0/bias": rng.standard_normal(64).astype(np.float32),
        "softmax_w": rng.standard_normal((16, 40)).astype(np.float32),
        "softmax_b": np.array([np.float32(1e-45), -0.0, np.finfo(np.float32).max, 1.0], np.float32),
    }
    meta = {"config": {"hidden_size": 16, "lr_decay": 1 / 1.15, "grad_norm": "dense"},
            "vocabulary": ["<eos>", "the", "café", "naïve"],
            "position": {"epoch": 2, "step": 17, "costs": 123.456789012345678, "finished": False},
            "history": [{"epoch": 1, "valid_perplexity": 140.25}],
            "rng": {"bit_generator": "PCG64", "state": {"state": 2 ** 127 + 12345, "inc": 3}}}
    state = [(rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((4, 16)).astype(np.float32))
             for _ in range(2)]
    return params, meta, state


def load_error(path):
    """The CheckpointError message of loading ``path``, and any ResourceWarning (a leaked file).

    NumPy's ``np.load`` leaves the file open when a file with a zip signature fails to open as a
    zip; the warning comes whenever the file object is collected, so it is caught here rather
    than in some later test.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            checkpoint.load(path)
        except CheckpointError as e:
            message = str(e)
        else:
            pytest.fail(f"checkpoint.load({path}) did not raise CheckpointError")
        gc.collect()
    return message, [w for w in caught if issubclass(w.category, ResourceWarning)]


def assert_fails(path, *fragments):
    message, _ = load_error(path)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


# ---- round trip ------------------------------------------------------------------------------------

def test_round_trip_is_exact(tmp_path):
    params, meta, state = sample()
    path = checkpoint.save(tmp_path / "new" / "dir" / "checkpoint.npz", params, meta, state)
    assert path == tmp_path / "new" / "dir" / "checkpoint.npz"
    loaded_params, loaded_meta, loaded_state = checkpoint.load(path)
    assert list(loaded_params) == list(params)
    for name, value in params.items():
        assert loaded_params[name].dtype == np.float32 and loaded_params[name].shape == value.shape
        assert loaded_params[name].tobytes() == value.tobytes(), name  # bit-exact, -0.0 and subnormals too
    assert loaded_meta == dict(meta, format=FORMAT)
    assert loaded_meta["rng"]["state"]["state"] == 2 ** 127 + 12345  # big ints survive JSON
    assert len(loaded_state) == 2
    for (c, h), (c2, h2) in zip(state, loaded_state):
        np.testing.assert_array_equal(c, c2)
        np.testing.assert_array_equal(h, h2)


def test_round_trip_without_state_and_from_views(tmp_path):
    params, meta, _ = sample()
    params["embedding"] = np.asfortranarray(params["embedding"])
    params["softmax_w"] = params["lstm_0/kernel"][::2, ::4]  # a strided view
    path = checkpoint.save(tmp_path / "c.npz", params, meta)
    loaded, _, state = checkpoint.load(path)
    assert state is None
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)


def test_save_overwrites_atomically_and_leaves_no_temporary_files(tmp_path):
    params, meta, state = sample()
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, params, meta, state)
    params2, _, _ = sample(seed=1)
    checkpoint.save(path, params2, dict(meta, history=[]), None)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "checkpoint.npz.prev"]
    loaded, loaded_meta, loaded_state = checkpoint.load(path)
    np.testing.assert_array_equal(loaded["embedding"], params2["embedding"])
    assert loaded_meta["history"] == [] and loaded_state is None
    previous, _, _ = checkpoint.load(checkpoint.previous_path(path))  # the replaced one is kept
    np.testing.assert_array_equal(previous["embedding"], params["embedding"])


@pytest.mark.parametrize("failure", ["while writing", "at the rename"])
def test_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch, failure):
    params, meta, state = sample()
    path = checkpoint.save(tmp_path / "checkpoint.npz", params, meta, state)
    before = path.read_bytes()

    if failure == "while writing":
        def broken_savez(f, **arrays):
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(np, "savez", broken_savez)
    else:
        def broken_replace(src, dst):
            raise OSError(1, "Operation not permitted")
        monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        checkpoint.save(path, *sample(seed=1))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["checkpoint.npz"]  # the temporary file was removed
    assert path.read_bytes() == before
    checkpoint.load(path)


# ---- unusable files ---------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    return checkpoint.save(tmp_path / "checkpoint.npz", *sample())


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_flipped_bytes_are_detected(saved, where):
    data = bytearray(saved.read_bytes())
    middle = int(len(data) * where)  # inside the float32 data of a member, which its CRC-32 covers
    for k in range(middle, middle + 4):
        data[k] ^= 0x5A
    saved.write_bytes(bytes(data))
    assert_fails(saved, "corrupt or truncated")


@pytest.mark.parametrize("keep", [0.5, 0.99, 100])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    assert_fails(saved, "corrupt or truncated")


def test_empty_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"")
    assert_fails(path, "not a ptbfast checkpoint (an empty file)")


@pytest.mark.parametrize("content", [b"hello, this is not a checkpoint\n", "random"])
def test_file_that_is_not_a_zip(tmp_path, content):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(np.random.default_rng(3).bytes(5000) if content == "random" else content)
    assert_fails(path, "not a ptbfast checkpoint (not a .npz file)")


def test_a_single_npy_array_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3, np.float32))
    assert_fails(path, "not a ptbfast checkpoint (not a .npz file)")


def test_npz_without_meta(tmp_path):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, **{"param/embedding": np.zeros((3, 2), np.float32)})
    assert_fails(path, "not a ptbfast checkpoint (a .npz file without ptbfast's metadata)")


@pytest.mark.parametrize("meta", [b"\xff\xfe not utf-8", b"{not json", json.dumps({"format": "other-1"}).encode(),
                                  json.dumps({"config": {}}).encode()])
def test_npz_with_foreign_or_broken_meta(tmp_path, meta):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.frombuffer(meta, dtype=np.uint8), **{"param/embedding": np.zeros((3, 2), np.float32)})
    message = assert_fails(path)
    assert "no readable metadata" in message or f"not a {FORMAT} file" in message


def test_missing_file(tmp_path):
    assert_fails(tmp_path / "nowhere" / "checkpoint.npz", "does not exist")
    # A directory (the run's --save-path, a common slip) is named as one, with the file to pass.
    assert_fails(tmp_path, "is a directory", str(tmp_path / "checkpoint.npz"))


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "checkpoint.npz"
    meta = np.frombuffer(json.dumps({"format": FORMAT}).encode(), dtype=np.uint8)
    np.savez(path, meta=meta, **{"param/embedding": np.array([Canary()], dtype=object)})  # savez pickles it
    UNPICKLED.clear()
    assert_fails(path, "corrupt or truncated")
    assert UNPICKLED == []
    with np.load(path, allow_pickle=True) as data:  # the canary works: a pickle-allowing load trips it
        data["param/embedding"]
    assert UNPICKLED == ["unpickled"]


def _npy_file(path):
    with open(path, "wb") as f:  # a lone .npy under the checkpoint's name, e.g. a wrong --checkpoint
        np.save(f, np.zeros(3, np.float32))


def _zip_with_raw_member(path):
    with zipfile.ZipFile(path, "w") as z:  # members that are not .npy files come back as bytes
        z.writestr("meta", json.dumps({"format": FORMAT}))


def _meta_not_an_object(path):
    np.savez(path, meta=np.frombuffer(b"[1, 2]", dtype=np.uint8))


@pytest.mark.parametrize("make", [_npy_file, _zip_with_raw_member, _meta_not_an_object])
def test_other_foreign_files(tmp_path, make):
    path = tmp_path / "checkpoint.npz"
    make(path)
    assert_fails(path)


def test_failed_load_closes_the_file(saved):
    saved.write_bytes(saved.read_bytes()[:100])  # truncated: still starts with the zip signature
    _, leaked = load_error(saved)
    assert leaked == []


@pytest.mark.parametrize("names", [["state/x/c", "state/x/h"], ["state/0/c"], ["state/0/h", "state/1/c", "state/1/h"]])
def test_malformed_state_members(tmp_path, names):
    params, meta, _ = sample()
    arrays = {f"param/{k}": v for k, v in params.items()}
    arrays.update({name: np.zeros((4, 16), np.float32) for name in names})
    arrays["meta"] = np.frombuffer(json.dumps(dict(meta, format=FORMAT)).encode(), np.uint8)
    path = tmp_path / "c.npz"
    np.savez(path, **arrays)
    assert_fails(path, "malformed LSTM state")


def test_check_params_names_every_problem():
    params, _, _ = sample()
    expected = {k: v.copy() for k, v in params.items()}
    checkpoint.check_params(params, expected, "c.npz")  # a perfect fit passes
    broken = dict(params, extra=np.zeros(3, np.float32), softmax_w=np.zeros((16, 41), np.float32),
                  softmax_b=np.array([np.nan] * 4, np.float32), embedding=np.zeros((40, 16), np.int32))
    del broken["lstm_0/bias"]
    with pytest.raises(CheckpointError) as err:
        checkpoint.check_params(broken, expected, "c.npz")
    for fragment in ("missing lstm_0/bias", "unexpected extra", "softmax_w has shape (16, 41)",
                     "softmax_b holds NaN", "embedding holds int32"):
        assert fragment in str(err.value)
    # float64 values are read as float32: one beyond its range would load as Inf, never checked again
    wide = {k: v.astype(np.float64) for k, v in params.items()}
    checkpoint.check_params(wide, expected, "c.npz")
    wide["lstm_0/bias"][1] = -1e300
    with pytest.raises(CheckpointError, match="lstm_0/bias holds values beyond float32's range"):
        checkpoint.check_params(wide, expected, "c.npz")
