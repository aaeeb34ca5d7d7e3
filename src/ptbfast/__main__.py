"""Command line: ``python -m ptbfast {train,eval,generate,embeddings,export,plot,bench,download,info} ...``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

from ptbfast import checkpoint, datasets, distributed
from ptbfast.configs import CONFIGS, GRAD_NORM_MODES, NONFINITE_ACTIONS, Config, get_config
from ptbfast.precision import PRECISIONS
from ptbfast.reader import DataError, load_corpus
from ptbfast.train import TrainingError


# Help for the config fields whose TF names do not say enough.
_FIELD_HELP = {
    "max_epoch": "epochs at the initial learning rate before it decays (TF max_epoch; not the total)",
    "max_max_epoch": "epochs in all (TF max_max_epoch; the same as --max-epochs)",
    "keep_prob": "dropout keep probability (1.0: no dropout)",
    "grad_norm": "clipping norm of the embedding gradient: indexed_slices (TF) or dense",
    "nonfinite": "a batch with a NaN/Inf loss or gradient: stop (default) or skip it",
    "eval_batch_size": "batch size of the final test pass (TF: 1)",
    "eval_num_steps": "steps of the final test pass (TF: 1)",
    "precision": "matrix products: fp32, or bf16 mixed precision (operands rounded to bfloat16)",
}


# The string fields' values (Config checks them too; argparse lists them in --help).
_FIELD_CHOICES = {"precision": PRECISIONS, "nonfinite": NONFINITE_ACTIONS, "grad_norm": GRAD_NORM_MODES}


# Each config field is an option whose argparse destination is "cfg_<field>"; only the two
# functions below know that prefix.
_CONFIG_DEST = "cfg_"


def _add_config_overrides(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config overrides (default: the chosen config's value)")
    for f in dataclasses.fields(Config):
        if f.name == "seed":  # --seed is a main option
            continue
        flag, dest = f"--{f.name.replace('_', '-')}", _CONFIG_DEST + f.name
        if isinstance(f.default, bool):
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=_FIELD_HELP.get(f.name))
        elif f.name in _FIELD_CHOICES:
            group.add_argument(flag, dest=dest, choices=_FIELD_CHOICES[f.name], default=None,
                               help=_FIELD_HELP.get(f.name))
        else:
            group.add_argument(flag, dest=dest, type=type(f.default), default=None,
                               metavar=type(f.default).__name__.upper(), help=_FIELD_HELP.get(f.name))


def _config_overrides(args) -> dict:
    """The config fields given on the command line: {field: value}."""
    return {k[len(_CONFIG_DEST):]: v for k, v in vars(args).items() if k.startswith(_CONFIG_DEST) and v is not None}


def _config_from_args(args) -> Config:
    overrides = _config_overrides(args)
    if args.max_epochs is not None:
        if overrides.get("max_max_epoch", args.max_epochs) != args.max_epochs:
            raise ValueError("--max-epochs and --max-max-epoch are the same setting; give one")
        overrides["max_max_epoch"] = args.max_epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    return get_config(args.config, **overrides)


def _set_threads(n, rank_default=None) -> None:
    """Sets ``n`` threads (--threads), warning where OpenMP may run fewer (the count would be printed,
    and timed, as if it ran); without ``n``, ``rank_default`` (under mpiexec: the cores / ranks on
    the host) or OMP_NUM_THREADS's count, or the cores, capped at OMP_THREAD_LIMIT."""
    import ptbfast
    if n:
        ptbfast.set_num_threads(n)
        reason = ptbfast.ops.fewer_threads_reason(n)
        if reason:
            warnings.warn(f"--threads {n} asked for, but {reason}", RuntimeWarning, stacklevel=2)
        return
    count = rank_default or ptbfast.get_num_threads()
    within = ptbfast.ops.threads_within_limit(count)
    if rank_default or within != count:
        ptbfast.set_num_threads(within)


def cmd_train(args) -> int:
    comm = distributed.world()  # one process, or this rank of an MPI job (ptbfast.distributed)
    if not comm.is_root:  # rank 0 alone logs: every rank reads the same data and would warn the same
        warnings.simplefilter("ignore")
    # Ranks: the whole setup runs on every rank, and an error on any of them is raised on all.
    trainer, data_dir, replaced = distributed.agree(comm, _new_trainer, args, comm)
    distributed.on_root(comm, _remove, replaced)  # (--overwrite: once every rank's setup has passed)
    say = _say if comm.is_root else (lambda message: None)
    if args.resume and distributed.on_root(comm, _holds_checkpoint, trainer.save_path):
        # (the only place that may fall back to checkpoint.npz.prev, and says so)
        used = distributed.agree(comm, trainer.restore)
        pos = trainer.position
        if pos.finished:
            say(f"Resumed from {used}: its {pos.epoch} epochs are all trained (--max-epochs N trains it further); "
                "the test pass runs again")
        else:
            say(f"Resumed from {used} at epoch {pos.epoch + 1}, step {pos.step}")
    say(f"Config {args.config}: {json.dumps(trainer.config.to_dict())}")
    say(f"Data: {data_dir} (vocabulary {trainer.corpus.vocab_size}, train {len(trainer.corpus.train)} tokens)")
    if trainer.save_path is None:
        say("No --save-path: no checkpoint or metrics.jsonl will be written")
    if comm.size > 1:
        threads = _threads()
        say(f"Data-parallel: {comm.size} ranks ({comm.library}), {trainer.config.batch_size // comm.size} rows of "
            f"each batch and {threads} thread{'s' if threads > 1 else ''} per rank")
    summaries = distributed.agree(comm, _open_summaries, args, trainer)
    try:
        result = trainer.train()
    finally:
        if summaries is not None:
            summaries.close()
    return 128 + result["signal"] if result.get("stopped") else 0  # the shell's code for death by signal


def _new_trainer(args, comm):
    """(trainer, data directory, the old run's files that --overwrite replaces) for ``train``'s
    arguments; with ranks, rank 0 alone checks the save path (and tensorboardX, for the log that
    _open_summaries opens). Nothing is deleted here: the setup may yet be refused, on any rank."""
    from ptbfast.train import Trainer

    # Ranks: --threads each; by default the host's cores shared among the ranks on it.
    _set_threads(args.threads, distributed.default_threads(comm) if comm.size > 1 else None)
    data_dir = datasets.ptb(args.data_path)
    corpus = load_corpus(data_dir)
    config = _config_from_args(args)
    save_path = Path(args.save_path) if args.save_path else None
    if args.resume and not save_path:
        raise SystemExit("--resume needs --save-path (the directory holding checkpoint.npz)")
    replaced = []
    if save_path and comm.is_root and not (args.resume and _holds_checkpoint(save_path)):
        if args.resume:  # (job scripts that always pass --resume start this way)
            _say(f"No checkpoint in {save_path} to resume from: starting a new run")
        replaced = _check_fresh_save_path(save_path, args.overwrite)
    if args.tensorboard and comm.is_root:
        from ptbfast import tensorboard  # (a clear ImportError naming the extra if it is missing)
        tensorboard.check_installed()
    trainer = Trainer(config, corpus, save_path=save_path, checkpoint_every=args.checkpoint_every,
                      progress=not args.no_progress, log=_say, summary_every=args.tensorboard_every, comm=comm)
    if save_path and comm.is_root:  # (last: a setup refused before leaves no directory made for it)
        _check_writable(save_path)
    return trainer, data_dir, replaced


def _open_summaries(args, trainer):
    """The TensorBoard log, opened once nothing has refused the run (an event file is made at once)."""
    if args.tensorboard and trainer.comm.is_root:
        from ptbfast.tensorboard import ScalarLog
        trainer.summaries = ScalarLog(args.tensorboard)
    return trainer.summaries


def _count(minimum: int, maximum: int | None = None):
    """An argparse type: an integer in [minimum, maximum] (--threads 0 was silently ignored)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}")
        return value
    return parse


def _thread_count():
    """--threads: 1 to ops.MAX_THREADS (libgomp ends the process at counts far above it)."""
    from ptbfast.ops import MAX_THREADS
    return _count(1, MAX_THREADS)


def _say(message: str) -> None:
    print(message, flush=True)


def _threads() -> int:
    import ptbfast
    return ptbfast.get_num_threads()


def _holds_checkpoint(save_path: Path) -> bool:
    from ptbfast.train import CHECKPOINT_NAME

    ckpt = save_path / CHECKPOINT_NAME
    return ckpt.exists() or checkpoint.previous_path(ckpt).exists()


def _check_fresh_save_path(save_path: Path, overwrite: bool) -> list[Path]:
    """A new run must not silently mix with an old one in the same directory: the old run's files,
    which ``overwrite`` allows to replace (the caller deletes them once the run may start)."""
    from ptbfast.train import CHECKPOINT_NAME, METRICS_NAME

    if save_path.exists() and not save_path.is_dir():  # (found otherwise at the first checkpoint, steps in)
        raise SystemExit(f"--save-path {save_path} is a file: name a directory (made if it does not exist)")
    ckpt = save_path / CHECKPOINT_NAME
    old = [p for p in (ckpt, checkpoint.previous_path(ckpt), save_path / METRICS_NAME) if p.exists()]
    for p in old:
        if p.is_dir():  # (--overwrite could not delete it, nor a checkpoint be written there)
            raise SystemExit(f"{p} is a directory, where the run's file goes: move it away")
    if old and not overwrite:
        raise SystemExit(f"{save_path} already holds a run ({', '.join(p.name for p in old)}): pass --resume to "
                         "continue it, --overwrite to replace it, or another --save-path")
    return old


def _check_writable(save_path: Path) -> None:
    """Make the directory and write a file in it now: a path that cannot be written would
    otherwise be found at the first checkpoint, an epoch or more of training later."""
    import tempfile

    try:
        checkpoint.make_directory(save_path)  # (names a file in the way)
        with tempfile.TemporaryFile(dir=save_path):
            pass
    except NotADirectoryError as e:
        raise SystemExit(f"--save-path {save_path} cannot be written: {e}") from None
    except OSError as e:
        raise SystemExit(f"--save-path {save_path} cannot be written: {e.strerror or e}") from None


def _remove(paths) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def cmd_eval(args) -> int:
    from ptbfast.lm import LanguageModel
    from ptbfast.train import evaluate

    _set_threads(args.threads)
    lm = LanguageModel.load(args.checkpoint, args.precision)
    config, model = lm.config, lm.model
    data_dir = datasets.ptb(args.data_path)
    corpus = load_corpus(data_dir)
    if corpus.id_to_word != lm.id_to_word:
        raise SystemExit(f"the vocabulary of {data_dir} differs from the checkpoint's")
    results = {}
    for split, batch, steps in (("valid", config.batch_size, config.num_steps),
                                ("test", config.eval_batch_size, config.eval_num_steps)):
        start = time.perf_counter()
        ppl = evaluate(model, getattr(corpus, split), batch, steps)
        results[split] = {"perplexity": ppl, "seconds": time.perf_counter() - start}
        print(f"{split.capitalize()} Perplexity: {ppl:.3f}  ({results[split]['seconds']:.1f} s)", flush=True,
              file=sys.stderr if args.json else sys.stdout)  # (--json: stdout holds the JSON alone)
    if args.json:
        print(json.dumps(results))
    return 0


def cmd_export(args) -> int:
    from ptbfast.export import export

    path = export(args.checkpoint, args.format, args.out, overwrite=args.overwrite)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, {args.format})")
    return 0


def cmd_download(args) -> int:
    # Into --cache-dir (or the default cache) whatever PTBFAST_DATA says: that variable is where
    # training looks, not where a download goes.
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else datasets.default_cache_dir()
    print(datasets.verify_ptb_files(cache) if datasets.has_ptb_files(cache) else datasets.download_ptb(cache))
    return 0


def cmd_bench(args) -> int:
    from ptbfast import bench

    _check_bench_modes(args)
    if not distributed.world().is_root:  # (bench --ranks's ranks: rank 0 alone warns, as in train)
        warnings.simplefilter("ignore")
    _set_threads(args.threads)
    if args.profile:
        from ptbfast.profile import format_profile, profile_eval, profile_training

        config = get_config(args.config or "small", **_config_overrides(args))
        for kind, profile in (("training", profile_training), ("evaluation (forward only)", profile_eval)):
            print(f"ms per {kind} step, {config.batch_size} x {config.num_steps} words, {_threads()} threads")
            print(format_profile({p: profile(config.replace(precision=p), args.steps) for p in PRECISIONS}))
            print()
        return 0
    if args.gemm:
        from ptbfast import gemm_bench

        result = gemm_bench.measure(progress=lambda done, total, shape: print(
            f"bench --gemm: {shape} measured ({done} of {total})", file=sys.stderr, flush=True))
        print(json.dumps(result) if args.json else gemm_bench.format_table(result))
        return 0
    if args.json:
        config = get_config(args.config or "small", **_config_overrides(args))
        result = bench.run_one(config, args.steps, args.impl, train_only=args.train_only)
        if distributed.world().is_root:  # (under mpiexec: bench --ranks's data-parallel measurement)
            print(json.dumps(result))
        return 0
    configs = [args.config] if args.config else ["small", "medium", "large"]
    if args.precisions:
        overrides = _override_args(args)
        if "--precision" in overrides:
            raise ValueError("bench --precisions measures both precisions; drop --precision")
        bench.run_precision_rounds(configs, args.steps, args.repeat, args.threads, overrides)
        return 0
    if args.ranks:
        for name in configs:  # (here, not as a traceback from inside mpiexec)
            distributed.check_batch_split(get_config(name, **_config_overrides(args)).batch_size, args.ranks)
        bench.run_ranks_table(configs, args.steps, args.ranks, args.threads, _override_args(args), args.repeat)
        return 0
    bench.run_table(configs, args.steps, args.threads, _override_args(args))
    return 0


def _check_bench_modes(args) -> None:
    """One measurement a call, and no flag it would ignore (each was accepted and silently dropped)."""
    from ptbfast.ops import MAX_THREADS

    modes = [flag for flag, on in (("--profile", args.profile), ("--gemm", args.gemm),
                                   ("--json", args.json and not args.gemm),  # (--gemm --json: its table as JSON)
                                   ("--precisions", args.precisions), ("--ranks", args.ranks)) if on]
    if len(modes) > 1:
        raise ValueError(f"bench measures one thing at a time: drop {' or '.join(modes[1:])} or {modes[0]}")
    if args.impl is not None and (not args.json or args.gemm):
        raise ValueError("--impl chooses the implementation --json measures (not --gemm's table): add --json")
    if args.ranks and args.threads and args.ranks * args.threads > MAX_THREADS:  # (the one-process run's)
        raise ValueError(f"--ranks {args.ranks} x --threads {args.threads} is more than {MAX_THREADS} threads")
    if args.gemm:
        ignored = [flag for flag, given in (("--config", args.config), ("--steps", args.steps is not None),
                                            ("config overrides", _config_overrides(args))) if given]
        if ignored:
            raise ValueError(f"bench --gemm times its fixed list of the configs' product shapes: drop "
                             f"{' and '.join(ignored)}")
    if args.repeat is not None and not (args.ranks or args.precisions):
        raise ValueError("--repeat alternates the measurements of --ranks or --precisions: add one")
    args.impl, args.repeat, args.steps = args.impl or "ptbfast", args.repeat or 1, args.steps or 20


def _override_args(args) -> list[str]:
    """The config overrides as command-line flags again (bench passes them to its child processes)."""
    out = []
    for name, v in _config_overrides(args).items():
        flag = f"--{name.replace('_', '-')}"
        out += ([flag] if v else [f"--no-{flag[2:]}"]) if isinstance(v, bool) else [flag, str(v)]
    return out


def cmd_generate(args) -> int:
    from ptbfast.lm import load

    _set_threads(args.threads)
    lm = load(args.checkpoint, args.precision)
    start = time.perf_counter()
    text = lm.generate(args.prompt, words=args.words, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    seconds = time.perf_counter() - start
    print(args.prompt + ("" if not args.prompt or text.startswith("\n") else " ") + text)  # (no space before a newline)
    print(f"[{args.words} words in {seconds:.3f} s]", file=sys.stderr)
    return 0


def cmd_embeddings(args) -> int:
    from ptbfast.lm import load
    from ptbfast.plots import plot_embeddings

    if not args.nearest and not args.plot:
        raise ValueError("nothing to do: give --nearest WORD ... and/or --plot PNG")
    lm = load(args.checkpoint)
    # (every word looked up before any is printed: an unknown one ends the command with nothing half-done)
    nearest = [(word, lm.nearest(word, args.k, args.space)) for word in args.nearest or []]
    for word, neighbours in nearest:
        print(f"{word}: " + ", ".join(f"{w} ({s:.2f})" for w, s in neighbours))
    if args.plot:
        methods = plot_embeddings(lm, args.plot, n_words=args.words, space=args.space)
        print(f"wrote {args.plot} ({', '.join(methods)})")
    return 0


def cmd_plot(args) -> int:
    from ptbfast.plots import plot_training_curves

    plot_training_curves(args.log, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_info(args) -> int:
    import ptbfast
    print(json.dumps(ptbfast.build_info(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ptbfast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (TF ptb_word_lm recipe)")
    train.add_argument("--config", choices=sorted(CONFIGS), default="small")
    train.add_argument("--data-path", help="directory with ptb.{train,valid,test}.txt, {train,valid,test}.txt or "
                                           "wiki.{train,valid,test}.tokens (default: $PTBFAST_DATA)")
    train.add_argument("--save-path", help="directory for checkpoint.npz and metrics.jsonl, made if missing "
                                           "(default: none, nothing is saved)")
    train.add_argument("--max-epochs", type=_count(1), help="epochs in all (config max_max_epoch)")
    train.add_argument("--seed", type=_count(0))
    train.add_argument("--threads", type=_thread_count(),
                       help="OpenMP and BLAS threads (under mpiexec: per rank; default there: the host's cores "
                            "divided by the ranks on it; defaults at most OMP_THREAD_LIMIT)")
    train.add_argument("--resume", action="store_true", help="continue from SAVE_PATH/checkpoint.npz")
    train.add_argument("--overwrite", action="store_true",
                       help="start afresh even if SAVE_PATH holds a run (its checkpoint and log are deleted)")
    train.add_argument("--checkpoint-every", type=_count(0), default=200, metavar="STEPS",
                       help="also checkpoint every STEPS batches within an epoch (0: only at epoch ends)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="write TensorBoard scalars to DIR (needs pip install 'ptbfast[tensorboard]')")
    train.add_argument("--tensorboard-every", type=_count(1), default=50, metavar="STEPS",
                       help="training loss, perplexity and words/s every STEPS batches (default 50)")
    _add_config_overrides(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="valid and test perplexity of a checkpoint")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data-path", help="the data it was trained on: a directory as train's --data-path (its "
                                        "training file gives the vocabulary, checked against the checkpoint's; "
                                        "default: $PTBFAST_DATA)")
    ev.add_argument("--threads", type=_thread_count())
    ev.add_argument("--json", action="store_true",
                    help="print {split: {perplexity, seconds}} as JSON on stdout (the plain lines go to stderr)")
    ev.add_argument("--precision", choices=PRECISIONS, help="matrix products (default: as trained)")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="write a checkpoint's model as safetensors (weights) or ONNX (graph)")
    ex.add_argument("--checkpoint", required=True)
    ex.add_argument("--format", required=True, choices=["safetensors", "onnx"])
    ex.add_argument("out", help="the file to write")
    ex.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    ex.set_defaults(func=cmd_export)

    dl = sub.add_parser("download", help="fetch Mikolov's PTB into the cache and verify it (files already "
                                         "there: verify them)")
    dl.add_argument("--cache-dir")
    dl.set_defaults(func=cmd_download)

    be = sub.add_parser("bench", help="training and evaluation words/sec (vs PyTorch when installed)")
    be.add_argument("--config", choices=sorted(CONFIGS), help="one config (default: small, medium, large)")
    be.add_argument("--steps", type=_count(1), help="timed steps per measurement (median; default 20)")
    be.add_argument("--threads", type=_thread_count())
    be.add_argument("--impl", choices=["ptbfast", "torch"], help="with --json (default: ptbfast)")
    be.add_argument("--json", action="store_true", help="measure one config here, print one JSON object")
    be.add_argument("--ranks", type=_count(1), metavar="N",
                    help="data-parallel training: mpiexec -n N with --threads each (default: cores / N) against one "
                         "process with N x that many threads; words/s, the step's parts, the allreduce")
    be.add_argument("--repeat", type=_count(1), metavar="K",
                    help="with --ranks or --precisions: alternate the measurements K times and report medians")
    be.add_argument("--precisions", action="store_true",
                    help="bf16 against fp32: ptbfast and PyTorch (when installed) in both precisions, alternated "
                         "--repeat times per config; each round's words/s and ratios, and their medians")
    be.add_argument("--profile", action="store_true",
                    help="where a training step's and an evaluation step's time goes, per phase, in fp32 and bf16 "
                         "(one config: default small)")
    be.add_argument("--gemm", action="store_true",
                    help="the bf16 GEMM table: GFLOP/s of each product kernel on the model's shapes, per call and "
                         "with B packed once, beside SGEMM and PyTorch's matmul, and shares of the bf16 peaks")
    be.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)  # (bench --ranks's one-process run)
    _add_config_overrides(be)
    be.set_defaults(func=cmd_bench)

    gen = sub.add_parser("generate", help="sample text from a trained model")
    gen.add_argument("--checkpoint", required=True)
    gen.add_argument("--prompt", default="")
    gen.add_argument("--words", type=_count(0), default=50)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=_count(1))
    gen.add_argument("--seed", type=_count(0))
    gen.add_argument("--threads", type=_thread_count())
    gen.add_argument("--precision", choices=PRECISIONS, help="matrix products (default: as trained)")
    gen.set_defaults(func=cmd_generate)

    emb = sub.add_parser("embeddings", help="nearest neighbours and a 2-D map of the learned word vectors")
    emb.add_argument("--checkpoint", required=True)
    emb.add_argument("--plot", help="PNG to draw (needs matplotlib: pip install 'ptbfast[plot]')")
    emb.add_argument("--words", type=_count(1), default=300, help="most frequent words to draw")
    emb.add_argument("--nearest", nargs="*", metavar="WORD", help="print the neighbours of these words")
    emb.add_argument("-k", type=_count(1), default=8)
    emb.add_argument("--space", choices=["input", "output"], default="input",
                     help="input embedding rows or softmax_w columns")
    emb.set_defaults(func=cmd_embeddings)

    pl = sub.add_parser("plot", help="training curves from a metrics.jsonl log")
    pl.add_argument("log")
    pl.add_argument("--out", required=True)
    pl.set_defaults(func=cmd_plot)

    info = sub.add_parser("info", help="build information")
    info.set_defaults(func=cmd_info)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line for a command's user (not the library line that raised it)."""
    return f"warning ({category.__name__}): {message}\n"


def main(argv=None) -> int:
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return _main(argv)
    finally:  # (main may be called in a process that goes on: tests, a script)
        warnings.formatwarning = formatwarning


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    try:
        comm = distributed.world()  # a plain run: one process, and mpi4py is never imported
    except distributed.DistributedError as e:  # (printed by every rank: there is nothing to agree with)
        print(f"error: {e}", file=sys.stderr)
        return 2
    if comm.size == 1:
        return _run(args)
    if args.command != "train" and not (args.command == "bench" and args.json):
        if comm.is_root:
            print(f"error: python -m ptbfast {args.command} runs as one process, not under mpiexec with {comm.size} "
                  "ranks (train is the data-parallel command)", file=sys.stderr)
        return 2
    try:
        return _run(args, comm)
    except BaseException as e:  # raised on this rank only (a bug, a local error, Ctrl-C): end the whole job,
        import traceback       # or the other ranks would wait for this one in their next collective for ever

        code = 128 + 2 if isinstance(e, KeyboardInterrupt) else e.code if isinstance(e, SystemExit) and \
            isinstance(e.code, int) else 1
        print(f"rank {comm.rank}: ending the MPI job: "
              + "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip(), file=sys.stderr)
        comm.abort(code)
        raise


def _run(args, comm=None) -> int:
    """Run the command; turn the errors it may raise into a message and an exit code.

    ``comm`` (ranks of an MPI job): only errors raised by every rank at the same point are handled
    here (rank 0 prints the message, every rank exits with the code); any other propagates to
    :func:`main`, which aborts the job. TrainingError is always raised by all ranks together: its
    causes (a non-finite loss on any rank, the summed gradient's norm) are agreed in the step's
    exchange.
    """
    from ptbfast.bench import BenchError

    def every_rank(e) -> bool:
        return comm is None or distributed.is_agreed(e) or isinstance(e, TrainingError)

    def report(message) -> None:
        if comm is None or comm.is_root:
            print(message, file=sys.stderr)

    try:
        return args.func(args)
    except (DataError, checkpoint.CheckpointError, ValueError, KeyError, MemoryError, ImportError, OSError,
            BenchError, distributed.DistributedError) as e:
        if not every_rank(e):
            raise
        report(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}")  # (a KeyError's str is its repr)
        return 2
    except TrainingError as e:
        report(f"training stopped: {e}")
        return 3
    except KeyboardInterrupt:  # outside training (which checkpoints and stops by itself): no traceback
        if comm is not None:
            raise
        print("interrupted", file=sys.stderr)
        return 128 + 2
    except SystemExit as e:  # argparse's exits (a code) and ptbfast's refusals (a message), as the errors above
        if (comm is None and not isinstance(e.code, str)) or (comm is not None and not every_rank(e)):
            raise
        if isinstance(e.code, str):
            report(f"error: {e.code}")
            return 2
        return e.code if isinstance(e.code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
