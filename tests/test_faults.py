"""Faults in training: a corrupt newest checkpoint, non-finite batches, configs too big for memory."""

import numpy as np
import pytest

from ptbfast import checkpoint, reader
from ptbfast.configs import get_config
from ptbfast.sgd import TrainingError
from ptbfast.train import CHECKPOINT_NAME, Trainer, check_memory, training_memory_bytes

from synthetic_corpus import write_corpus


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(directory)
    return reader.load_corpus(directory)


def config(corpus, **changes):
    base = dict(hidden_size=8, num_steps=5, batch_size=4, vocab_size=corpus.vocab_size, max_max_epoch=2,
                max_epoch=1, init_scale=0.3)
    return get_config("small", **{**base, **changes})


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(corpus, tmp_path):
    trainer = Trainer(config(corpus), corpus, save_path=tmp_path, log=lambda s: None, progress=False)
    trainer.train()  # two epoch-end checkpoints: the first is kept as .prev
    path = tmp_path / CHECKPOINT_NAME
    previous = checkpoint.previous_path(path)
    assert previous.exists()
    _, prev_meta, _ = checkpoint.load(previous)
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(path)
    messages = []
    resumed = Trainer(config(corpus), corpus, save_path=tmp_path, log=messages.append, progress=False)
    assert resumed.restore() == previous
    assert resumed.position.epoch == prev_meta["position"]["epoch"] == 1
    # The log says which file it resumed from and why the newer one was skipped.
    (warning,) = [m for m in messages if m.startswith("warning:")]
    assert f"not resuming from {path}" in warning and "corrupt or truncated" in warning
    assert f"resuming from the previous checkpoint {previous}" in warning


def test_resume_from_a_good_checkpoint_says_nothing_about_the_previous_one(corpus, tmp_path):
    Trainer(config(corpus), corpus, save_path=tmp_path, log=lambda s: None, progress=False).train()
    messages = []
    resumed = Trainer(config(corpus), corpus, save_path=tmp_path, log=messages.append, progress=False)
    assert resumed.restore() == tmp_path / CHECKPOINT_NAME
    assert not [m for m in messages if m.startswith("warning:")]


def test_both_checkpoints_unusable_names_both(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(b"garbage")
    checkpoint.previous_path(path).write_bytes(b"more garbage")
    with pytest.raises(checkpoint.CheckpointError, match="previous one"):
        checkpoint.load_model_or_previous(path)


def poison_step(trainer, bad_steps):
    """Make the model's loss non-finite at the given global call numbers."""
    real = trainer.model.loss_and_sparse_grads
    calls = {"n": 0}

    def maybe_poisoned(*args):
        calls["n"] += 1
        if calls["n"] in bad_steps:
            raise FloatingPointError("the loss is nan (injected)")
        return real(*args)
    trainer.model.loss_and_sparse_grads = maybe_poisoned


def test_nonfinite_batches_are_skipped_when_configured(corpus):
    messages = []
    trainer = Trainer(config(corpus, nonfinite="skip", max_max_epoch=1), corpus, log=messages.append, progress=False)
    poison_step(trainer, {3, 7})
    result = trainer.train()
    assert result["history"][0]["skipped_batches"] == 2
    assert np.isfinite(result["test_perplexity"])
    assert sum("skipped" in m for m in messages) == 2


def test_nonfinite_batch_stops_training_by_default(corpus):
    trainer = Trainer(config(corpus, max_max_epoch=1), corpus, log=lambda s: None, progress=False)
    poison_step(trainer, {3})
    with pytest.raises(TrainingError, match="step 2"):
        trainer.train()


def test_memory_estimate_grows_with_the_config_and_huge_configs_fail_up_front():
    small, medium = get_config("small"), get_config("medium")
    assert 20e6 < training_memory_bytes(small) < training_memory_bytes(medium) < 1e9
    huge = get_config("small", vocab_size=2_000_000_000 // 200 * 10, hidden_size=200)
    with pytest.raises(MemoryError, match=r"needs about \d+\.\d GiB"):
        check_memory(huge)
    check_memory(small)  # fits


def test_corpus_shorter_than_one_batch_is_a_clear_error(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text("a b c\n")
    corpus = reader.load_corpus(tmp_path)
    trainer = Trainer(get_config("test", vocab_size=10), corpus, log=lambda s: None, progress=False)
    with pytest.raises(ValueError, match="decrease batch_size or num_steps"):
        trainer.train()


def test_corpus_vocabulary_smaller_than_vocab_size_trains(corpus):
    # As in TF, vocab_size only sizes the embedding and softmax; unused rows stay at their init.
    trainer = Trainer(config(corpus, vocab_size=corpus.vocab_size + 20, max_max_epoch=1), corpus,
                      log=lambda s: None, progress=False)
    before = trainer.model.params["embedding"][corpus.vocab_size:].copy()
    trainer.train()
    np.testing.assert_array_equal(trainer.model.params["embedding"][corpus.vocab_size:], before)
