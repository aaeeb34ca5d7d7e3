"""Faults in training: a corrupt newest checkpoint, non-finite batches, configs too big for memory."""

import shutil

import numpy as np
import pytest

from ptbfast import checkpoint, reader, train
from ptbfast.configs import get_config
from ptbfast.sgd import TrainingError
from ptbfast.train import CHECKPOINT_NAME, Trainer, available_memory_bytes, check_memory, training_memory_bytes

from helpers import damaged_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(trained_run, corpus, tmp_path, tiny_config):
    path, says = damaged_checkpoint(tmp_path, trained_run, "corrupt")
    previous = checkpoint.previous_path(path)
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(path)
    messages = []
    resumed = Trainer(tiny_config(), corpus, save_path=tmp_path, log=messages.append, progress=False)
    assert resumed.restore() == previous
    assert resumed.position.epoch == 1  # .prev: the end of epoch 1
    # The log says which file it resumed from and why the newer one was skipped.
    (warning,) = [m for m in messages if m.startswith("warning:")]
    assert f"not resuming from {path}" in warning and says in warning
    assert f"resuming from the previous checkpoint {previous}" in warning


def test_resume_from_a_good_checkpoint_says_nothing_about_the_previous_one(trained_run, corpus, tmp_path,
                                                                           tiny_config):
    shutil.copytree(trained_run, tmp_path, dirs_exist_ok=True)
    messages = []
    resumed = Trainer(tiny_config(), corpus, save_path=tmp_path, log=messages.append, progress=False)
    assert resumed.restore() == tmp_path / CHECKPOINT_NAME
    assert resumed.position.epoch == 2 and resumed.position.finished
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

    def maybe_poisoned(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] in bad_steps:
            raise FloatingPointError("the loss is nan (injected)")
        return real(*args, **kwargs)
    trainer.model.loss_and_sparse_grads = maybe_poisoned


def test_nonfinite_batches_are_skipped_when_configured(corpus, tiny_config):
    messages = []
    trainer = Trainer(tiny_config(nonfinite="skip", max_max_epoch=1), corpus, log=messages.append, progress=False)
    poison_step(trainer, {3, 7})
    result = trainer.train()
    assert result["history"][0]["skipped_batches"] == 2
    assert np.isfinite(result["test_perplexity"])
    assert sum("skipped" in m for m in messages) == 2


def test_nonfinite_batch_stops_training_by_default(corpus, tiny_config):
    trainer = Trainer(tiny_config(max_max_epoch=1), corpus, log=lambda s: None, progress=False)
    poison_step(trainer, {3})
    with pytest.raises(TrainingError, match=r"step 2: .*nothing was saved \(no save path\)"):
        trainer.train()


def test_a_stop_before_the_first_checkpoint_names_none(corpus, tiny_config, tmp_path):
    trainer = Trainer(tiny_config(max_max_epoch=1), corpus, save_path=tmp_path, checkpoint_every=0,
                      log=lambda s: None, progress=False)
    poison_step(trainer, {3})
    with pytest.raises(TrainingError, match="step 2: .*no checkpoint was saved yet") as err:
        trainer.train()
    assert str(tmp_path) not in str(err.value) and not list(tmp_path.glob("checkpoint*"))


def test_memory_estimate_grows_with_the_config_and_huge_configs_fail_up_front(monkeypatch):
    small, medium = get_config("small"), get_config("medium")
    assert 20e6 < training_memory_bytes(small) < training_memory_bytes(medium) < 1e9
    check_memory(small)  # fits in this machine's memory
    assert available_memory_bytes() is None or available_memory_bytes() > training_memory_bytes(small)
    huge = get_config("small", vocab_size=2_000_000_000 // 200 * 10, hidden_size=200)  # ~224 GiB
    monkeypatch.setattr(train, "available_memory_bytes", lambda: 16 << 30)  # (some hosts have 224 GiB free)
    with pytest.raises(MemoryError, match=r"needs about \d+\.\d GiB .* but only 16\.0 GiB is available"):
        check_memory(huge)
    check_memory(small)


def test_a_container_memory_limit_counts_as_available_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(train, "CGROUP", tmp_path)
    monkeypatch.setattr(train, "MEMINFO", tmp_path / "meminfo")  # (the real one changes from read to read)
    (tmp_path / "meminfo").write_text("MemTotal:       16384 kB\nMemAvailable:    8192 kB\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert available_memory_bytes() == 8192 * 1024  # no limit: MemAvailable
    (tmp_path / "memory.max").write_text(f"{(3 << 20) + 1000}\n")
    assert available_memory_bytes() == 3 << 20  # the limit less what the cgroup uses
    (tmp_path / "memory.max").write_text(f"{(30 << 20) + 1000}\n")
    assert available_memory_bytes() == 8192 * 1024  # the smaller of the two
    (tmp_path / "memory.current").write_text("garbage\n")
    assert available_memory_bytes() == 8192 * 1024  # unreadable: ignored
    (tmp_path / "meminfo").unlink()
    assert available_memory_bytes() is None


def test_corpus_shorter_than_one_batch_is_a_clear_error(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text("a b c\n")
    corpus = reader.load_corpus(tmp_path)
    with pytest.raises(ValueError, match="the train data .*decrease batch_size or num_steps"):
        Trainer(get_config("test", vocab_size=10), corpus, log=lambda s: None, progress=False)


def test_corpus_vocabulary_smaller_than_vocab_size_trains(corpus, tiny_config):
    # As in TF, vocab_size only sizes the embedding and softmax; unused rows stay at their init.
    trainer = Trainer(tiny_config(vocab_size=corpus.vocab_size + 20, max_max_epoch=1), corpus,
                      log=lambda s: None, progress=False)
    before = trainer.model.params["embedding"][corpus.vocab_size:].copy()
    trainer.train()
    np.testing.assert_array_equal(trainer.model.params["embedding"][corpus.vocab_size:], before)
