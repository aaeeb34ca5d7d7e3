"""Dropout's random numbers (src/cpp/dropout.cpp): Philox4x32-10 against Random123's known answers
(through the NumPy twin in ptbfast.reference), the C++ kernels against that twin bit for bit, and
the masks' statistics."""

import math

import numpy as np
import pytest

import ptbfast
from ptbfast import ops, reference

# Random123's kat_vectors, "philox4x32 10": counter (4 words), key (2 words) -> the block's 4 words.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, words", KNOWN_ANSWERS)
def test_reference_philox_gives_random123s_known_answers(counter, key, words):
    got = reference.philox4x32_10([np.array([c], np.uint64) for c in counter], key)
    assert tuple(int(w) for w in got[:, 0]) == words


# Around the kernel's groups of 64 elements (16 blocks of 4 words), size 1, empty, multi-dimensional.
SHAPES = [(0,), (1,), (3,), (63,), (64,), (65,), (129,), (5, 7, 11), (2, 0, 3), (40_001,)]
KEYS = [(0, 0), (2**64 - 1, 2**32 - 1), (0x243F6A8885A308D3, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed, stream", KEYS)
def test_uniform_and_mask_equal_the_reference_bit_for_bit(shape, seed, stream):
    got = ops.random_uniform(shape, seed, stream)
    assert got.shape == shape and got.dtype == np.float32
    assert got.tobytes() == reference.random_uniform(shape, seed, stream).tobytes()
    mask = ops.dropout_mask(shape, seed, stream, 0.35)
    assert mask.tobytes() == reference.dropout_mask(shape, seed, stream, 0.35).tobytes()


def test_the_same_bits_for_any_thread_count():
    saved = ptbfast.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 1):
            ptbfast.set_num_threads(threads)
            results.append(ops.dropout_mask((35, 20, 650), 99, 1, 0.5).tobytes())
    finally:
        ptbfast.set_num_threads(saved)
    assert len(set(results)) == 1


@pytest.mark.parametrize("keep_prob", [0.35, 0.5, 0.9])
def test_masks_keep_their_share_with_the_inverted_scale(keep_prob):
    n = 1_000_000
    mask = ops.dropout_mask(n, 2024, 0, keep_prob)
    assert set(np.unique(mask)) <= {np.float32(0.0), np.float32(1.0 / keep_prob)}
    kept = np.count_nonzero(mask)
    sigma = math.sqrt(n * keep_prob * (1 - keep_prob))
    assert abs(kept - n * keep_prob) < 5 * sigma  # (fixed seed: this holds or fails the same everywhere)
    assert ops.dropout_mask(1000, 1, 0, 1.0).min() == 1.0  # keep_prob 1 keeps everything


def test_uniforms_cover_the_interval_and_streams_and_seeds_differ():
    u = ops.random_uniform(1_000_000, 5, 0)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert u.min() < 1e-5 and u.max() > 1 - 1e-5
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / u.size)
    # Neighbouring elements (different words of one block, or neighbouring blocks) are uncorrelated.
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / math.sqrt(u.size)
    assert abs(np.corrcoef(u[:-16], u[16:])[0, 1]) < 5 / math.sqrt(u.size)
    others = [ops.random_uniform(1000, 5, 1), ops.random_uniform(1000, 6, 0)]
    for other in others:
        assert np.count_nonzero(other == u[:1000]) < 5


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="seed"):
        ops.random_uniform(4, -1)
    with pytest.raises(ValueError, match="seed"):
        ops.random_uniform(4, 2**64)
    with pytest.raises(ValueError, match="stream"):
        ops.dropout_mask(4, 0, 2**32, 0.5)
    with pytest.raises(ValueError, match="keep_prob"):
        ops.dropout_mask(4, 0, 0, 0.0)
    with pytest.raises(ValueError, match="keep_prob"):
        ops.dropout_mask(4, 0, 0, 1.5)
    with pytest.raises(ValueError, match="too small"):
        ops.dropout_mask(4, 0, 0, 1e-40)
    with pytest.raises(TypeError):
        ops.random_uniform(4, 2.7)
    with pytest.raises(TypeError):
        ops.dropout_mask(4, 0, 1.9, 0.5)
    with pytest.raises(ValueError, match="negative"):
        ops.random_uniform((3, -1), 0)
    with pytest.raises(TypeError):
        ops.random_uniform((3.5,), 0)
