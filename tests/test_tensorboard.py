"""TensorBoard scalars (ptbfast.tensorboard): written with tensorboardX, read back without TF."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ptbfast import tensorboard
from ptbfast.tensorboard import TAGS, ScalarLog, crc32c, masked_crc32c, read_records, read_scalars


def needs_tensorboardx():
    pytest.importorskip("tensorboardX", reason="tensorboardX is not installed (pip install 'ptbfast[tensorboard]')")


def event_files(logdir):
    return sorted(logdir.glob("events.out.tfevents.*"))


def test_scalars_read_back_exactly(tmp_path):
    needs_tensorboardx()
    values = [math.pi, -5.5, 1e-30, 123456.789, 0.0, 3.4e38]  # pi and 123456.789 are not float32
    written = {}
    with ScalarLog(tmp_path) as log:
        for k, tag in enumerate(TAGS):
            for j, value in enumerate(values[k % 3:]):
                step = 2 ** 40 + 1000 * j + k  # steps are int64
                log.scalar(tag, value, step)
                written.setdefault(tag, []).append((step, float(np.float32(value))))
    read = read_scalars(tmp_path)
    assert read == written  # steps exact, values the float32 of what was logged, in order
    assert len(event_files(tmp_path)) == 1


def test_flush_makes_scalars_readable_while_the_log_is_open(tmp_path):
    needs_tensorboardx()
    log = ScalarLog(tmp_path)
    log.scalar(tensorboard.TRAINING_LOSS, 5.25, 1)
    log.flush()
    assert read_scalars(tmp_path) == {"Training_Loss": [(1, 5.25)]}
    log.scalar(tensorboard.TRAINING_LOSS, 4.5, 2)
    log.close()
    assert read_scalars(tmp_path) == {"Training_Loss": [(1, 5.25), (2, 4.5)]}


def test_a_second_log_in_the_same_directory_adds_a_file(tmp_path):
    needs_tensorboardx()
    for step in (1, 2):  # within one second: the file names must still differ
        with ScalarLog(tmp_path) as log:
            log.scalar(tensorboard.VALIDATION_PERPLEXITY, 100.0 / step, step)
    assert len(event_files(tmp_path)) == 2
    assert read_scalars(tmp_path) == {"Validation_Perplexity": [(1, 100.0), (2, 50.0)]}


def test_tags_tensorflow_would_rename_are_refused(tmp_path):
    needs_tensorboardx()
    with ScalarLog(tmp_path) as log:
        with pytest.raises(ValueError, match="'Training Loss'"):
            log.scalar("Training Loss", 1.0, 0)
    assert all(" " not in tag for tag in TAGS)


def test_crc32c_known_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283      # the standard CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA           # RFC 3720 B.4: 32 bytes of zeros
    assert masked_crc32c(b"") == 0xA282EAD8


def test_a_cut_short_record_is_skipped_and_a_corrupt_one_is_an_error(tmp_path):
    needs_tensorboardx()
    with ScalarLog(tmp_path) as log:
        for step in range(3):
            log.scalar(tensorboard.LEARNING_RATE, 1.0 / (step + 1), step)
    (path,) = event_files(tmp_path)
    data = path.read_bytes()
    assert len(list(read_records(path))) == 4  # the file-version event and 3 scalars

    path.write_bytes(data[:-3])  # a writer still busy with its last record
    assert read_scalars(tmp_path) == {"Learning_Rate": [(0, 1.0), (1, 0.5)]}

    corrupt = bytearray(data)
    corrupt[-6] ^= 0x01  # a bit of the last record's payload
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=f"{path}: corrupt record data"):
        read_scalars(tmp_path)
    corrupt = bytearray(data)
    corrupt[0] ^= 0x01  # the first record's length
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=f"{path}: corrupt record length at byte 0"):
        read_scalars(tmp_path)


def test_reading_needs_no_tensorflow_tensorboard_or_torch(tmp_path):
    needs_tensorboardx()
    with ScalarLog(tmp_path) as log:
        log.scalar(tensorboard.TEST_PERPLEXITY, 82.5, 7)
    script = textwrap.dedent(f"""
        import sys
        for name in ("tensorflow", "tensorboard", "torch"):  # importing these now fails
            sys.modules[name] = None
        from ptbfast.tensorboard import read_scalars
        assert read_scalars({str(tmp_path)!r}) == {{"Test_Perplexity": [(7, 82.5)]}}
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", script], check=True, env=env)


def test_missing_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "tensorboardX" or m.startswith("tensorboardX.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes `import tensorboardX...` fail
    for call in (lambda: ScalarLog(tmp_path / "logs"), lambda: read_scalars(tmp_path)):
        with pytest.raises(ImportError, match=r"tensorboardX.*pip install 'ptbfast\[tensorboard\]'"):
            call()
    assert not (tmp_path / "logs").exists()


def test_training_writes_the_scalars_of_metrics_jsonl(tmp_path):
    # A 2-epoch run on the synthetic corpus: the per-epoch and test values in the event file are the
    # float32 of metrics.jsonl's, and the training scalars come every summary_every batches.
    needs_tensorboardx()
    import json

    from synthetic_corpus import write_corpus

    from ptbfast import reader
    from ptbfast.configs import get_config
    from ptbfast.train import METRICS_NAME, Trainer

    corpus = reader.load_corpus(write_corpus(tmp_path / "data"))
    config = get_config("test", vocab_size=corpus.vocab_size, batch_size=4, num_steps=5, hidden_size=8,
                        max_max_epoch=2, learning_rate=0.5)
    with ScalarLog(tmp_path / "tb") as log:
        Trainer(config, corpus, save_path=tmp_path / "run", log=lambda s: None, progress=False, summaries=log,
                summary_every=20).train()
    rows = [json.loads(line) for line in (tmp_path / "run" / METRICS_NAME).read_text().splitlines()]
    epochs, test = rows[:-1], rows[-1]
    batches = reader.epoch_size(len(corpus.train), 4, 5)
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    read = read_scalars(tmp_path / "tb")
    assert read[tensorboard.VALIDATION_PERPLEXITY] == [((k + 1) * batches, f32(r["valid_perplexity"]))
                                                      for k, r in enumerate(epochs)]
    assert read[tensorboard.VALIDATION_LOSS] == [((k + 1) * batches, f32(math.log(r["valid_perplexity"])))
                                                for k, r in enumerate(epochs)]
    assert read[tensorboard.LEARNING_RATE] == [(k * batches, f32(r["learning_rate"])) for k, r in enumerate(epochs)]
    assert read[tensorboard.TEST_PERPLEXITY] == [(2 * batches, f32(test["test_perplexity"]))]
    train_steps = [s for s, _ in read[tensorboard.TRAINING_PERPLEXITY]]
    assert train_steps == [e * batches + s for e in range(2) for s in range(20, batches + 1, 20)]
    for (_, loss), (_, ppl) in zip(read[tensorboard.TRAINING_LOSS], read[tensorboard.TRAINING_PERPLEXITY]):
        assert ppl == pytest.approx(math.exp(loss), rel=1e-5)
    assert set(read) == set(TAGS)
    # A summary at an epoch's last batch is the epoch's training perplexity, the running mean of all its
    # batches (173 here, prime: the run above never logs there), and its loss the log of it.
    with ScalarLog(tmp_path / "tb_epoch") as log:
        Trainer(config.replace(max_max_epoch=1), corpus, save_path=tmp_path / "run_epoch", log=lambda s: None,
                progress=False, summaries=log, summary_every=batches).train()
    epoch = json.loads((tmp_path / "run_epoch" / METRICS_NAME).read_text().splitlines()[0])
    read = read_scalars(tmp_path / "tb_epoch")
    assert read[tensorboard.TRAINING_PERPLEXITY] == [(batches, f32(epoch["train_perplexity"]))]
    assert read[tensorboard.TRAINING_LOSS] == [(batches, pytest.approx(math.log(epoch["train_perplexity"]), rel=1e-6))]
