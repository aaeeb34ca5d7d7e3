"""Training and evaluation, as TF's ``ptb_word_lm.py`` does them.

    for each epoch:
        lr = learning_rate * lr_decay ** max(epoch + 1 - max_epoch, 0)
        run_epoch(train data, with dropout, SGD on gradients clipped by one global norm)
        run_epoch(valid data)
    run_epoch(test data, batch 1, 1 step)

The LSTM state is carried from batch to batch and reset at the start of every epoch; the cost of a
batch is the sum over its steps of the batch-mean cross-entropy, and perplexity is
``exp(total cost / total steps)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptbfast import checkpoint, ops
from ptbfast import tensorboard as tb
from ptbfast.configs import Config
from ptbfast.distributed import DataParallel, SingleProcess, on_root
from ptbfast.model import LSTMLanguageModel
from ptbfast.reader import Corpus, epoch_size, ptb_producer
from ptbfast.sgd import TrainingError
from ptbfast.signals import StopSignals
from ptbfast.step import dropout_masks, training_step  # noqa: F401 (dropout_masks: its old home was here)

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"


def perplexity(mean_cost: float) -> float:
    """``exp(mean cost)``, infinite rather than an OverflowError when training has diverged."""
    return math.exp(mean_cost) if mean_cost < 709.0 else math.inf


# ---- memory ------------------------------------------------------------------------------------------

def training_memory_bytes(config: Config) -> int:
    """About how many bytes a training step of ``config`` holds at its peak (float32 everywhere):
    parameters, their gradients, each layer's activations kept for backward and its backward
    scratch, dropout masks, and the output layer's block of logits (at most 16 MiB)."""
    V, H, L, B, T = config.vocab_size, config.hidden_size, config.num_layers, config.batch_size, config.num_steps
    params = (1 if config.tie_weights else 2) * V * H + V + L * (2 * H * 4 * H + 4 * H)
    grads = params - V * H + T * B * H             # the embedding gradient is one row per token
    per_layer = T * B * H * (1 + 1 + 1 + 4 + 4 + 1) + 2 * (H * 4 * H)  # x, h, c, gates, d_gates, dx, packed Wh
    masks = (L + 1) * T * B * H if config.keep_prob < 1 else 0
    logits = min(T * B * V, ops.OUTPUT_BLOCK_FLOATS)
    return 4 * (params + grads + L * per_layer + masks + logits + 2 * T * B * H)


MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")  # this process's cgroup v2, as a container sees it


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or less where a container's memory limit (cgroup v2)
    leaves less; None where neither can be read."""
    have = []
    try:
        with open(MEMINFO, encoding="ascii") as f:
            have += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:  # (a container killed for memory says nothing; failing up front names the sizes)
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            have.append(int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(have)) if have else None


def check_memory(config: Config) -> None:
    """Fail before training, with the sizes, if ``config`` cannot fit in the available memory."""
    need, have = training_memory_bytes(config), available_memory_bytes()
    if have is not None and need > have:
        raise MemoryError(f"this config needs about {need / 2**30:.1f} GiB for training "
                          f"(vocab_size={config.vocab_size}, hidden_size={config.hidden_size}, "
                          f"batch_size={config.batch_size}, num_steps={config.num_steps}) but only "
                          f"{have / 2**30:.1f} GiB is available")


# ---- evaluation ------------------------------------------------------------------------------------

def check_enough_data(config: Config, corpus: Corpus) -> None:
    """Raise before training if a split is too short for its batches: a short validation or test
    file would otherwise surface only when the first epoch, or the last, has been trained."""
    for split, batch, steps in (("train", config.batch_size, config.num_steps),
                                ("valid", config.batch_size, config.num_steps),
                                ("test", config.eval_batch_size, config.eval_num_steps)):
        tokens = len(getattr(corpus, split))
        if epoch_size(tokens, batch, steps) == 0:
            raise ValueError(f"the {split} data ({tokens} tokens, {corpus.paths.get(split, 'in memory')}) are too "
                             f"few for one batch of batch_size={batch}, num_steps={steps}: at least "
                             f"{batch * (steps + 1)} tokens are needed (or decrease batch_size or num_steps)")


def evaluate(model: LSTMLanguageModel, data: np.ndarray, batch_size: int, num_steps: int,
             chunk_rows: int = 4096, dp: DataParallel | None = None) -> float:
    """Perplexity of ``data`` batched as TF's ``ptb_producer(data, batch_size, num_steps)``.

    With the state carried, running k consecutive batches of ``num_steps`` equals running one batch
    of ``k * num_steps`` steps, so the same tokens are scored in chunks of about ``chunk_rows``
    words per C++ call: TF's batch-1, step-1 test pass becomes ~20 calls instead of 82,429.
    With ``dp`` (data-parallel ranks), each rank scores its block of rows and the costs are summed.
    """
    steps_per_row = epoch_size(len(data), batch_size, num_steps) * num_steps
    if steps_per_row == 0:
        raise ValueError(f"{len(data)} tokens are too few to evaluate with batch_size={batch_size}, "
                         f"num_steps={num_steps}")
    rows = np.asarray(data[: batch_size * (len(data) // batch_size)]).reshape(batch_size, -1)
    chunk = max(num_steps, (chunk_rows // batch_size) // num_steps * num_steps)
    if dp is not None and dp.distributed:  # this rank's rows; its costs are means over the whole batch
        rows = rows[dp.row_range(batch_size)]
    state = model.initial_state(rows.shape[0])
    costs = 0.0
    with model.frozen():  # (bf16: the output weights rounded once for all the chunks)
        for start in range(0, steps_per_row, chunk):
            stop = min(start + chunk, steps_per_row)
            cost, state = model.loss(rows[:, start:stop], rows[:, start + 1:stop + 1], state, total_batch=batch_size)
            costs += cost
    if dp is not None:
        costs, = dp.sum(costs)
    return perplexity(costs / steps_per_row)


# ---- the training loop ----------------------------------------------------------------------------

@dataclass
class Position:
    """Where training stands: enough to resume exactly."""

    epoch: int = 0                 # 0-based epoch being trained
    step: int = 0                  # next batch of that epoch
    costs: float = 0.0             # sum of batch costs so far in the epoch
    seconds: float = 0.0           # training time so far in the epoch
    history: list = field(default_factory=list)  # one dict per finished epoch
    finished: bool = False
    skipped: int = 0               # batches skipped in the epoch (config.nonfinite == "skip")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, history=None) -> "Position":
        """From :meth:`to_dict`'s dict; ``history`` for checkpoints that kept it beside the position."""
        values = dict(values)
        if "history" not in values and history is not None:
            values["history"] = history
        known = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name in ("epoch", "step", "costs", "seconds", "finished", "history") if name not in values]
        if missing:
            raise KeyError(f"position lacks {', '.join(missing)}")
        kinds = {"int": int, "float": float, "bool": bool, "list": list}
        return cls(**{name: kinds[known[name].type](value) for name, value in values.items() if name in known})


class Trainer:
    """Trains ``LSTMLanguageModel`` on a corpus with a config; checkpoints and resumes.

    ``summaries`` (optional): where TensorBoard scalars go, a :class:`ptbfast.tensorboard.ScalarLog`
    or anything with its ``scalar(tag, value, step)`` and ``flush()``; training loss, perplexity and
    words/s every ``summary_every`` batches, the learning rate per epoch, validation loss and
    perplexity per epoch, test perplexity at the end. Steps count batches from the start of training.

    ``comm`` (optional): a communicator from :mod:`ptbfast.distributed` to train data-parallel: each
    rank trains its block of every batch's rows, and rank 0 alone logs, summarises and writes files.
    """

    def __init__(self, config: Config, corpus: Corpus, save_path=None, log=print, checkpoint_every: int = 0,
                 progress: bool = True, summaries=None, summary_every: int = 50, comm=None):
        if corpus.vocab_size > config.vocab_size:
            raise ValueError(f"the corpus has {corpus.vocab_size} words but config.vocab_size is "
                             f"{config.vocab_size}; raise vocab_size")
        check_enough_data(config, corpus)
        check_memory(config)
        self.config = config
        self.corpus = corpus
        self.comm = comm or SingleProcess()
        self.save_path = Path(save_path) if save_path else None
        self.log = log if self.comm.is_root else _silent
        self.checkpoint_every = checkpoint_every
        self.progress = progress and self.comm.is_root
        self.summaries = summaries if self.comm.is_root else None
        self.summary_every = summary_every
        self.model = LSTMLanguageModel.from_config(config)
        self.rng = np.random.default_rng([config.seed, 1])  # dropout; separate stream from the init
        # This rank's rows of each batch and the step's collectives (one process: they change nothing).
        self.dp = DataParallel(self.comm, config.batch_size, self.model.params, sparse_embedding=not config.tie_weights)
        self.position = Position()
        self.state = None  # LSTM state carried within the epoch (ranks: their rows of it)
        self.signals = StopSignals(self.dp.distributed)
        self._fresh = True  # not restored: train() starts a new metrics log

    # ---- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.save_path / CHECKPOINT_NAME if self.save_path else None

    def save(self, path=None) -> Path:
        """Write the checkpoint (ranks: rank 0 writes it, with the full batch's LSTM state gathered
        from all of them; every rank must call this at the same point)."""
        bad = [name for name, a in self.model.params.items() if not np.isfinite(a).all()]
        if bad:  # never replace a good checkpoint with NaN/Inf weights
            raise TrainingError(f"refusing to checkpoint non-finite parameters: {', '.join(bad)}")
        self.dp.check_replicas(self.model.params)
        state = self.dp.full_state(self.state)
        meta = {
            "config": self.config.to_dict(),
            "vocabulary": self.corpus.id_to_word,
            "position": self.position.to_dict(),
            "rng": self.rng.bit_generator.state,
        }
        return on_root(self.comm, checkpoint.save, path or self.checkpoint_path, self.model.params, meta, state)

    def restore(self, path=None) -> Path:
        """Resume from the checkpoint, or from the previous one it replaced if it is unusable (said
        in the log, with the reason). Returns the file resumed from."""
        path = Path(path or self.checkpoint_path)
        # Ranks: rank 0 reads it (the save path need not be shared) and every rank checks the same data.
        saved, why_skipped = on_root(self.comm, checkpoint.load_model_or_previous, path)
        used = saved.path
        if why_skipped:
            self.log(f"warning: not resuming from {path}: {why_skipped}; resuming from the previous "
                     f"checkpoint {used} instead")
        try:
            position = Position.from_dict(saved.meta["position"], saved.meta.get("history"))
            rng_state = saved.meta["rng"]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise checkpoint.CheckpointError(f"{used} is not a resumable training checkpoint "
                                             f"({type(e).__name__}: {e})") from None
        saved_config, current = saved.config.to_dict(), self.config.to_dict()  # both complete: the same keys
        # max_max_epoch may differ (a finished run can be trained further: no other number depends on it).
        changed = [f"{k} ({saved_config[k]!r} there, {current[k]!r} here)" for k in current
                   if k != "max_max_epoch" and saved_config[k] != current[k]]
        if changed:
            raise checkpoint.CheckpointError(f"checkpoint config differs in {', '.join(changed)}; resume with "
                                             "the config it was trained with")
        n_batches = epoch_size(len(self.corpus.train), self.config.batch_size, self.config.num_steps)
        if position.epoch < 0:
            raise checkpoint.CheckpointError(f"{used} is not a resumable training checkpoint (epoch {position.epoch})")
        if not 0 <= position.step <= n_batches:  # (past the end, every batch was skipped for ever)
            raise checkpoint.CheckpointError(
                f"{used} stands at epoch {position.epoch + 1}, step {position.step}, outside this training data's "
                f"epochs of {n_batches} batches: was it trained on another {self.corpus.paths.get('train', 'train')}?")
        if position.epoch > self.config.max_max_epoch:
            raise checkpoint.CheckpointError(f"{used} has trained {position.epoch} epochs, more than max_max_epoch="
                                             f"{self.config.max_max_epoch}")
        position.finished = position.epoch >= self.config.max_max_epoch
        if saved.vocabulary != self.corpus.id_to_word:
            raise checkpoint.CheckpointError("checkpoint vocabulary differs from this corpus's")
        state, shape = saved.state, (self.config.batch_size, self.config.hidden_size)
        if state and (len(state) != self.config.num_layers or any(a.shape != shape for pair in state for a in pair)):
            raise checkpoint.CheckpointError(f"{used} holds an LSTM state that does not fit the config "
                                             f"({self.config.num_layers} layers of {shape})")
        try:
            self.rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as e:
            raise checkpoint.CheckpointError(f"{used} has an unusable random-number state ({e})") from None
        self.model.params = saved.model.params
        self.position = position
        self.state = self.dp.local_state([(np.array(c), np.array(h)) for c, h in state]) if state else None
        self._fresh = False
        return used

    # ---- training ----------------------------------------------------------------------------------
    def train(self) -> dict:
        """Train to ``max_max_epoch`` (from wherever :meth:`restore` left off), then test."""
        cfg = self.config
        if self._fresh and self.save_path:
            on_root(self.comm, _remove, self.save_path / METRICS_NAME)  # a new run: its log must not continue an old one
        self._fresh = False
        with self.signals.caught():  # (dp.agree_signal: the handler's signal; ranks: whether any has one)
            while self.position.epoch < cfg.max_max_epoch and self.dp.agree_signal(self.signals.received) is None:
                self.run_epoch()
        stop = self.dp.agree_signal(self.signals.received)
        if stop is not None:
            path = self.save() if self.save_path else None
            self.log(f"Stopped by signal {stop} at epoch {self.position.epoch + 1}, step {self.position.step}"
                     + (f"; checkpoint saved to {path}" if path else "; nothing saved (no save path)"))
            return {"stopped": True, "signal": int(stop), "history": self.position.history}
        start = time.perf_counter()
        test_ppl = on_root(self.comm, self._test_perplexity)
        self.log(f"Test Perplexity: {test_ppl:.3f}")
        result = {"history": self.position.history, "test_perplexity": test_ppl,
                  "test_seconds": time.perf_counter() - start}
        self._write_metrics({"test_perplexity": test_ppl, "seconds": result["test_seconds"]})
        self._summarise({tb.TEST_PERPLEXITY: test_ppl}, self._global_step())
        return result

    def run_epoch(self) -> None:
        """One epoch of training batches (TF's ``run_epoch`` with ``eval_op``), then validation."""
        cfg, pos = self.config, self.position
        lr = cfg.learning_rate_at(pos.epoch)
        n_batches = epoch_size(len(self.corpus.train), cfg.batch_size, cfg.num_steps)
        if pos.step == 0:
            self.log(f"Epoch: {pos.epoch + 1} Learning rate: {lr:.3f}")
            self._summarise({tb.LEARNING_RATE: lr}, self._global_step())
            self.state = self.model.initial_state(self.dp.rows.stop - self.dp.rows.start)
            pos.costs, pos.seconds, pos.skipped = 0.0, 0.0, 0
        bar = _progress_bar(n_batches, pos.step, pos.epoch, self.progress)
        started = time.perf_counter() - pos.seconds
        for step, (x, y) in enumerate(ptb_producer(self.corpus.train, cfg.batch_size, cfg.num_steps)):
            if step < pos.step:
                continue  # resuming: these batches were trained before the checkpoint
            cost = self.train_step(x, y, lr, step)
            self._record_step(step, cost, n_batches, started, bar)
            if self.signals.stop_requested():
                break
        if bar is not None:
            bar.close()
        if pos.step == n_batches:
            self._finish_epoch(lr, n_batches)

    def train_step(self, x, y, lr: float, step: int) -> float | None:
        """One training step (:func:`ptbfast.step.training_step`) on batch ``x``/``y``; carries the
        LSTM state. Returns the batch's cost, or None if the batch was skipped
        (``config.nonfinite == "skip"``)."""
        cfg = self.config
        outcome = training_step(self.model, cfg, self.dp, x, y, self.state, self.rng, lr, self.signals.received)
        self.signals.agreed = outcome.signal
        if outcome.failure is not None:
            if not isinstance(outcome.failure, (FloatingPointError, TrainingError)):
                raise outcome.failure
            if cfg.nonfinite == "skip":  # drop this batch: no update, state and costs as before it
                self.log(f"warning: epoch {self.position.epoch + 1}, step {step} skipped: {outcome.failure}")
                return None
            raise TrainingError(f"epoch {self.position.epoch + 1}, step {step}: {outcome.failure}. The weights were "
                                f"not updated{self._last_checkpoint_note()}") from None
        self.state = outcome.state
        return outcome.cost

    def _last_checkpoint_note(self) -> str:
        """Where the run can resume from, for a message that ends it (rank 0 writes checkpoints)."""
        if not self.save_path:
            return "; nothing was saved (no save path)"
        if self.checkpoint_path.exists():
            return f"; the last good checkpoint is {self.checkpoint_path}"
        return "; no checkpoint was saved yet"

    # ---- bookkeeping: position, log lines, progress bar, checkpoints, validation, metrics ---------------
    def _record_step(self, step: int, cost: float | None, n_batches: int, started: float, bar) -> None:
        cfg, pos = self.config, self.position
        pos.step = step + 1
        if cost is None:
            pos.skipped += 1
            return
        pos.costs += cost
        pos.seconds = time.perf_counter() - started
        words = pos.step * cfg.batch_size * cfg.num_steps
        mean_cost = pos.costs / (max(pos.step - pos.skipped, 1) * cfg.num_steps)
        ppl = perplexity(mean_cost)
        if self.summary_every and pos.step % self.summary_every == 0:
            self._summarise({tb.TRAINING_LOSS: mean_cost, tb.TRAINING_PERPLEXITY: ppl,
                             tb.WORDS_PER_SECOND: words / pos.seconds}, self._global_step())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ppl=f"{ppl:.2f}", wps=f"{words / pos.seconds:.0f}", refresh=False)
        if n_batches >= 10 and step % (n_batches // 10) == 10:  # TF's condition and its 0-based step
            self.log(f"{step / n_batches:.3f} perplexity: {ppl:.3f} speed: {words / pos.seconds:.0f} wps")
        if self.save_path and self.checkpoint_every and pos.step % self.checkpoint_every == 0 and pos.step < n_batches:
            self.save()

    def _finish_epoch(self, lr: float, n_batches: int) -> None:
        cfg, pos = self.config, self.position
        trained = n_batches - pos.skipped
        if trained == 0:
            raise TrainingError(f"epoch {pos.epoch + 1}: every batch was skipped (non-finite loss or gradient)")
        train_ppl = perplexity(pos.costs / (trained * cfg.num_steps))
        wps = n_batches * cfg.batch_size * cfg.num_steps / pos.seconds
        self.log(f"Epoch: {pos.epoch + 1} Train Perplexity: {train_ppl:.3f}")
        valid_start = time.perf_counter()
        valid_ppl = evaluate(self.model, self.corpus.valid, cfg.batch_size, cfg.num_steps, dp=self.dp)
        self.log(f"Epoch: {pos.epoch + 1} Valid Perplexity: {valid_ppl:.3f}")
        row = {"epoch": pos.epoch + 1, "learning_rate": lr, "train_perplexity": train_ppl,
               "valid_perplexity": valid_ppl, "train_wps": wps, "train_seconds": pos.seconds,
               "valid_seconds": time.perf_counter() - valid_start, "skipped_batches": pos.skipped}
        pos.history.append(row)
        self._summarise({tb.VALIDATION_LOSS: math.log(valid_ppl) if valid_ppl > 0 else math.nan,
                         tb.VALIDATION_PERPLEXITY: valid_ppl}, self._global_step(), flush=True)
        pos.epoch, pos.step, pos.costs, pos.seconds = pos.epoch + 1, 0, 0.0, 0.0
        pos.finished = pos.epoch >= cfg.max_max_epoch
        if self.save_path:
            self.save()  # before the metrics line, so a crash between the two never repeats an epoch's line
        self._write_metrics(row)

    def _global_step(self) -> int:
        """Batches trained since the start of training (the x axis of the TensorBoard scalars)."""
        cfg = self.config
        return self.position.epoch * epoch_size(len(self.corpus.train), cfg.batch_size, cfg.num_steps) + self.position.step

    def _summarise(self, scalars: dict, step: int, flush: bool = False) -> None:
        if self.summaries is None:
            return
        for tag, value in scalars.items():
            self.summaries.scalar(tag, value, step)
        if flush:
            self.summaries.flush()

    def _write_metrics(self, row: dict) -> None:
        if self.save_path:
            on_root(self.comm, _append_line, self.save_path / METRICS_NAME, json.dumps(row))

    def _test_perplexity(self) -> float:
        """TF's test pass (batch 1 by default) in one process: with ranks, rank 0 runs it on the
        threads of all the ranks on its host, which wait asleep."""
        cfg, threads = self.config, ops.get_num_threads()
        if self.comm.size > 1:
            ops.set_num_threads(threads * self.comm.local_size)
        try:
            return evaluate(self.model, self.corpus.test, cfg.eval_batch_size, cfg.eval_num_steps)
        finally:
            if self.comm.size > 1:
                ops.set_num_threads(threads)


def _silent(_message: str) -> None:
    """The log of ranks other than 0."""


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _progress_bar(total: int, initial: int, epoch: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm  # a dependency; imported here so that importing ptbfast stays light
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}", unit="batch", leave=False, disable=None)
