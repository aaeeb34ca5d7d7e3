"""TensorBoard scalars: written with tensorboardX, read back with no TensorFlow or tensorboard.

    log = ScalarLog("runs/small/tensorboard")
    log.scalar(TRAINING_LOSS, 5.2, step=100)
    log.close()
    read_scalars("runs/small/tensorboard")   # {"Training_Loss": [(100, 5.199999809265137)]}

Tags are stored as TensorFlow's ``tf.summary.scalar`` stored ptb_word_lm's: characters other than
letters, digits and ``-/_.`` become ``_`` (TF 1.x logged "Summary name Training Loss is illegal;
using Training_Loss instead", and tensorboardX does the same), so the constants below are the
stored names. Values are float32 (``Summary.Value.simple_value``), as TF wrote them.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import struct
import time
from pathlib import Path

EXTRA = "pip install 'ptbfast[tensorboard]'"

# The tags ptb_word_lm's Supervisor wrote ("Training Loss", "Learning Rate", "Validation Loss"),
# and ptbfast's own. The two losses are the mean cross-entropy per word, as PyTorch's
# word_language_model reports it (log of the perplexity beside it); under these tags TF logged one
# batch's cost, its batch-mean losses summed over num_steps (20 or 35 times larger).
TRAINING_LOSS = "Training_Loss"
TRAINING_PERPLEXITY = "Training_Perplexity"
LEARNING_RATE = "Learning_Rate"
WORDS_PER_SECOND = "Words_per_Second"
VALIDATION_LOSS = "Validation_Loss"
VALIDATION_PERPLEXITY = "Validation_Perplexity"
TEST_PERPLEXITY = "Test_Perplexity"
TAGS = (TRAINING_LOSS, TRAINING_PERPLEXITY, LEARNING_RATE, WORDS_PER_SECOND, VALIDATION_LOSS,
        VALIDATION_PERPLEXITY, TEST_PERPLEXITY)

_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w.]")
_log_numbers = itertools.count()


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(f"TensorBoard logs need the tensorboardX package: {EXTRA}") from e


def check_installed() -> None:
    """ImportError naming the extra to install, where tensorboardX is missing."""
    _import("tensorboardX.event_file_writer")


class ScalarLog:
    """Scalars to a new TensorBoard event file in ``logdir``, written synchronously.

    tensorboardX's ``SummaryWriter`` hands events to a background thread through a queue, and its
    ``flush()`` does not wait for that queue, so a reader may not see scalars logged before the
    flush. This class writes with the ``EventsWriter`` underneath it (the same file format, name
    and records), so after ``flush()`` every scalar is in the file.
    """

    def __init__(self, logdir):
        events = _import("tensorboardX.event_file_writer")
        self._event_pb2 = _import("tensorboardX.proto.event_pb2")
        self._summary_pb2 = _import("tensorboardX.proto.summary_pb2")
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # The name holds the time in whole seconds: the suffix keeps a second log opened in the
        # same second (a resumed run, a test) from truncating the first.
        suffix = f".{os.getpid()}.{next(_log_numbers)}"
        self._writer = events.EventsWriter(str(self.logdir / "events"), filename_suffix=suffix)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if _INVALID_TAG_CHARACTERS.search(tag) or tag.startswith("/"):
            # TF and tensorboardX's SummaryWriter would rename it: keep the names of all three equal.
            raise ValueError(f"tag {tag!r} has characters TensorFlow replaces: use letters, digits and -/_.")
        entry = self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        self._writer.write_event(self._event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=self._summary_pb2.Summary(value=[entry])))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "ScalarLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- reading event files ----------------------------------------------------------------------

def _crc32c_table() -> list:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord files; pure Python, for small files."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated and offset so that a CRC of CRCs is not a CRC."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """The payloads of a TFRecord file, in order; ``ValueError`` for a record that fails its CRC.

    A record cut short at the end of the file is not returned: it is one still being written (the
    writer may be running), as TensorBoard treats it.
    """
    data = Path(path).read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        header, length_crc = data[pos:pos + 8], struct.unpack_from("<I", data, pos + 8)[0]
        if masked_crc32c(header) != length_crc:
            raise ValueError(f"{path}: corrupt record length at byte {pos}")
        (length,) = struct.unpack("<Q", header)
        end = pos + 12 + length + 4
        if end > len(data):
            return
        payload = data[pos + 12:end - 4]
        if masked_crc32c(payload) != struct.unpack_from("<I", data, end - 4)[0]:
            raise ValueError(f"{path}: corrupt record data at byte {pos}")
        yield payload
        pos = end


def read_scalars(logdir) -> dict:
    """``{tag: [(step, value), ...]}`` from the event files directly in ``logdir``, oldest file
    first and in written order within each; only tensorboardX's protobuf classes are needed."""
    Event = _import("tensorboardX.proto.event_pb2").Event
    scalars: dict = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):  # names start with the time (s)
        for record in read_records(path):
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, []).append((int(event.step), value.simple_value))
    return scalars
