"""Every command-line test: ``python -m ptbfast`` run as a user runs it, in a subprocess.

On the synthetic corpus (tests/synthetic_corpus.py) with the tiny config: train prints TF's lines
and eval reproduces them; a checkpoint named on the command line is that file or an error, never
the ``checkpoint.npz.prev`` beside it, while ``train --resume`` falls back to ``.prev`` and says so;
killed or stopped runs resume to the same bits; data-path errors; ``bench --json``; ``info``.
One training run (the module's ``trained`` fixture) serves every test that needs a checkpoint.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ptbfast
from ptbfast import checkpoint
from ptbfast.datasets import PTB_FILES
from ptbfast.train import CHECKPOINT_NAME, METRICS_NAME

from helpers import DAMAGED_CHECKPOINTS, damaged_checkpoint, epochs_of, same_params
from synthetic_corpus import VOCAB_SIZE, cli_args

# ---- running the command -------------------------------------------------------------------------

# The directory the ptbfast under test was imported from, unless the interpreter finds it anyway (an
# installed package): a child process with cwd elsewhere must run the same code, not another copy
# (a relative PYTHONPATH such as "src" would otherwise point nowhere, and an older install win).
_IMPORTED_FROM = Path(ptbfast.__file__).resolve().parent.parent
_SITE_DIRS = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}


def light_env(**changes):
    """The environment of a child process: one thread, unbuffered, importing the ptbfast under test;
    ``changes`` set variables (None removes one)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)  # (the tests read the warnings a command prints)
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _IMPORTED_FROM not in _SITE_DIRS:
        paths.insert(0, str(_IMPORTED_FROM))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def command(*args) -> list:
    return [sys.executable, "-m", "ptbfast", *map(str, args)]


def ptbfast_cli(*args, cwd, env=None):
    return subprocess.run(command(*args), cwd=cwd, env=env or light_env(), capture_output=True, text=True,
                          timeout=120)


def run_together(commands, cwd) -> list:
    """Run several ``python -m ptbfast`` commands at once (each is mostly interpreter start-up)."""
    procs = [subprocess.Popen(command(*args), cwd=cwd, env=light_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def value(pattern, text):
    """The float printed after ``pattern`` (with 3 decimals) in ``text``, as the printed string."""
    found = re.findall(re.escape(pattern) + r" (\d+\.\d{3})(?:\s|$)", text)
    assert len(found) == 1, f"{pattern!r} in:\n{text}"
    return found[0]


def test_subprocesses_run_the_ptbfast_under_test(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import ptbfast; print(ptbfast.__file__)"], cwd=tmp_path,
                          env=light_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == Path(ptbfast.__file__).resolve()


# ---- one tiny training run -----------------------------------------------------------------------

# Three epochs with dropout (resuming must restore the RNG too); checkpoints at epoch ends only, so
# checkpoint.npz is the end of epoch 3 and checkpoint.npz.prev the end of epoch 2.
TRAINED = [*cli_args(keep_prob=0.8, max_max_epoch=3), "--checkpoint-every", "0"]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """(save path, stdout) of ``train`` with TRAINED; tests that change the run copy it first."""
    save = tmp_path_factory.mktemp("run")
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", save, *TRAINED, cwd=save)
    assert done.returncode == 0, done.stderr
    return save, done.stdout


def test_train_prints_tf_style_lines(trained):
    save, out = trained
    lines = out.splitlines()
    assert (lines.index("Epoch: 1 Learning rate: 1.000") < lines.index("Epoch: 2 Learning rate: 0.500")
            < lines.index("Epoch: 3 Learning rate: 0.250"))
    for epoch in (1, 2, 3):
        assert float(value(f"Epoch: {epoch} Train Perplexity:", out)) > 1
        assert float(value(f"Epoch: {epoch} Valid Perplexity:", out)) > 1
    assert lines[-1] == f"Test Perplexity: {value('Test Perplexity:', out)}"
    config = json.loads(out.split("Config small: ", 1)[1].splitlines()[0])
    assert (config["hidden_size"], config["num_steps"], config["batch_size"], config["vocab_size"],
            config["max_max_epoch"], config["num_layers"], config["keep_prob"]) == (8, 5, 4, VOCAB_SIZE, 3, 2, 0.8)
    assert sorted(p.name for p in save.iterdir()) == [CHECKPOINT_NAME, CHECKPOINT_NAME + ".prev", METRICS_NAME]


def test_eval_reproduces_the_trained_perplexities(trained, data_dir):
    save, out = trained
    done = ptbfast_cli("eval", "--checkpoint", save / CHECKPOINT_NAME, "--data-path", data_dir, "--json", cwd=save)
    assert done.returncode == 0, done.stderr
    # --json: the plain lines on stderr, stdout one JSON object alone
    assert value("Test Perplexity:", done.stderr) == value("Test Perplexity:", out)
    assert value("Valid Perplexity:", done.stderr) == value("Epoch: 3 Valid Perplexity:", out)
    results = json.loads(done.stdout)
    metrics = [json.loads(line) for line in (save / METRICS_NAME).read_text().splitlines()]
    assert results["test"]["perplexity"] == metrics[-1]["test_perplexity"]  # the same float, bit for bit
    assert results["valid"]["perplexity"] == metrics[-2]["valid_perplexity"]


def test_eval_and_generate_in_the_other_precision(trained, data_dir, one_thread):
    # Parameters are float32 whatever the precision: an fp32-trained model evaluates in bf16 too
    # (close to, not equal to, its fp32 perplexity), and says once that bf16 is not faster here.
    # The perplexities are compared unrounded (eval --json): printed to three decimals they can agree
    # (both 5.905 on an AMD Zen 4, where the costs differed by 1e-7 relative).
    save, _ = trained
    perplexity = {}
    for precision in ("fp32", "bf16"):
        done = ptbfast_cli("eval", "--checkpoint", save / CHECKPOINT_NAME, "--data-path", data_dir,
                           "--precision", precision, "--json", cwd=save)
        assert done.returncode == 0, done.stderr
        perplexity[precision] = json.loads(done.stdout)["test"]["perplexity"]
        assert done.stderr.count("Bf16PerformanceWarning") == (precision == "bf16")
    fp32, bf16 = perplexity["fp32"], perplexity["bf16"]
    assert bf16 != fp32 and abs(bf16 - fp32) < 0.02 * fp32
    # generate: the words LanguageModel.generate samples in that precision, at one thread both.
    import warnings

    from ptbfast.lm import LanguageModel
    from ptbfast.precision import Bf16PerformanceWarning

    for precision in ("fp32", "bf16"):
        done = ptbfast_cli("generate", "--checkpoint", save / CHECKPOINT_NAME, "--precision", precision,
                           "--words", "7", "--seed", "3", "--prompt", "w01", "--threads", "1", cwd=save)
        assert done.returncode == 0, done.stderr
        with warnings.catch_warnings():  # (said once by the command above)
            warnings.simplefilter("ignore", Bf16PerformanceWarning)
            text = LanguageModel.load(save / CHECKPOINT_NAME, precision).generate("w01", words=7, seed=3)
        assert done.stdout == "w01" + ("" if text.startswith("\n") else " ") + text + "\n"
        assert len(text.replace("\n", " <eos> ").split()) == 7
    bad = ptbfast_cli("eval", "--checkpoint", save / CHECKPOINT_NAME, "--data-path", data_dir, "--precision", "fp16",
                      cwd=save)
    assert bad.returncode == 2 and "invalid choice: 'fp16'" in bad.stderr


def test_export_writes_both_formats_and_refuses_to_overwrite(trained, tmp_path):
    save, _ = trained
    pytest.importorskip("safetensors", reason="safetensors is not installed (pip install 'ptbfast[export]')")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ptbfast[export]')")
    for fmt in ("safetensors", "onnx"):
        out = tmp_path / f"model.{fmt}"
        done = ptbfast_cli("export", "--checkpoint", save / CHECKPOINT_NAME, "--format", fmt, out, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"wrote {out} ({out.stat().st_size:,} bytes, {fmt})" in done.stdout
        before = out.read_bytes()
        again = ptbfast_cli("export", "--checkpoint", save / CHECKPOINT_NAME, "--format", fmt, out, cwd=tmp_path)
        assert again.returncode == 2 and "exists" in again.stderr and "--overwrite" in again.stderr
        assert out.read_bytes() == before
        forced = ptbfast_cli("export", "--checkpoint", save / CHECKPOINT_NAME, "--format", fmt, out, "--overwrite",
                             cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
    unknown = ptbfast_cli("export", "--checkpoint", save / CHECKPOINT_NAME, "--format", "pickle", tmp_path / "x",
                          cwd=tmp_path)
    assert unknown.returncode == 2 and "invalid choice: 'pickle'" in unknown.stderr


def test_tensorboard_flag(data_dir, tmp_path):
    # With tensorboardX: the event file holds the run's scalars. Without it: a clear error naming the
    # package, before any training.
    args = ["train", "--data-path", data_dir, "--save-path", tmp_path / "run", *cli_args(max_max_epoch=1),
            "--tensorboard", tmp_path / "tb", "--tensorboard-every", "25"]
    blocked = tmp_path / "no_tensorboardx"
    blocked.mkdir()
    (blocked / "tensorboardX.py").write_text("raise ImportError('blocked for this test')\n")
    env = light_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), env["PYTHONPATH"]])
    done = ptbfast_cli(*args, cwd=tmp_path, env=env)
    assert done.returncode == 2 and "tensorboardX" in done.stderr and "ptbfast[tensorboard]" in done.stderr
    assert "Epoch:" not in done.stdout
    if importlib.util.find_spec("tensorboardX") is None:
        pytest.skip("tensorboardX is not installed (pip install 'ptbfast[tensorboard]')")
    done = ptbfast_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from ptbfast import tensorboard

    scalars = tensorboard.read_scalars(tmp_path / "tb")
    metrics = [json.loads(line) for line in (tmp_path / "run" / METRICS_NAME).read_text().splitlines()]
    assert [v for _, v in scalars[tensorboard.VALIDATION_PERPLEXITY]] == pytest.approx(
        [metrics[0]["valid_perplexity"]], rel=1e-6)
    assert [v for _, v in scalars[tensorboard.TEST_PERPLEXITY]] == pytest.approx([metrics[1]["test_perplexity"]],
                                                                                 rel=1e-6)
    assert len(scalars[tensorboard.TRAINING_LOSS]) >= 1
    # A run refused in its setup (a vocabulary too small for the data) leaves no event file behind.
    refused = ptbfast_cli(*args[:-4], "--tensorboard", tmp_path / "tb2", "--vocab-size", "5", "--overwrite",
                          cwd=tmp_path)
    assert refused.returncode != 0 and "vocab_size" in refused.stderr
    assert not list((tmp_path / "tb2").glob("events*"))


@pytest.mark.parametrize("resume", [False, True])
def test_a_save_path_that_is_a_file_is_refused_before_training(data_dir, tmp_path, resume):
    afile = tmp_path / "afile"
    afile.write_text("hi\n")
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", afile, *cli_args(max_max_epoch=1),
                       *(["--resume"] if resume else []), cwd=tmp_path)
    assert done.returncode == 2 and f"error: --save-path {afile} is a file" in done.stderr
    assert "Epoch:" not in done.stdout and afile.read_text() == "hi\n"


def test_a_save_path_that_cannot_be_written_is_refused_before_training(data_dir, tmp_path):
    # (a directory under a file: root, which CI may be, writes wherever permissions alone forbid)
    afile = tmp_path / "afile"
    afile.write_text("hi\n")
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", afile / "run", *cli_args(max_max_epoch=1),
                       cwd=tmp_path)
    assert done.returncode == 2 and f"error: --save-path {afile / 'run'} cannot be written" in done.stderr
    assert "Epoch:" not in done.stdout


def test_a_refused_setup_makes_no_save_path(data_dir, tmp_path):
    save = tmp_path / "a" / "b"
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", save, *cli_args(max_max_epoch=1),
                       "--vocab-size", "5", cwd=tmp_path)
    assert done.returncode == 2 and "vocab_size" in done.stderr and not (tmp_path / "a").exists()


def test_a_directory_where_the_checkpoint_goes_is_refused(data_dir, tmp_path):
    (tmp_path / "run" / CHECKPOINT_NAME).mkdir(parents=True)
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", tmp_path / "run", *cli_args(max_max_epoch=1),
                       "--overwrite", cwd=tmp_path)
    assert done.returncode == 2 and f"{tmp_path / 'run' / CHECKPOINT_NAME} is a directory" in done.stderr


def test_a_new_run_does_not_mix_with_an_old_one(trained, data_dir, tmp_path):
    save, _ = trained
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", save, *cli_args(), cwd=save)
    assert done.returncode != 0 and "already holds a run" in done.stderr and "--overwrite" in done.stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS_NAME).write_text('{"epoch": 7}\n')
    # --overwrite replaces the old run only once the new one may start (a refused setup deleted it).
    refused = ptbfast_cli("train", "--data-path", data_dir, "--save-path", run, *cli_args(), "--overwrite",
                          "--vocab-size", "5", cwd=tmp_path)
    assert refused.returncode != 0 and "vocab_size" in refused.stderr
    assert (run / METRICS_NAME).read_text() == '{"epoch": 7}\n'
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", run, *cli_args(), "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (run / METRICS_NAME).read_text().splitlines()]
    assert [r.get("epoch") for r in rows] == [1, 2, None]


def test_resume_without_a_checkpoint_starts_a_new_run_and_says_so(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS_NAME).write_text('{"epoch": 7}\n')  # an old run's log, its checkpoints gone
    args = ["train", "--data-path", data_dir, "--save-path", run, *cli_args(max_max_epoch=1), "--resume"]
    done = ptbfast_cli(*args, cwd=tmp_path)
    assert done.returncode != 0 and "already holds a run (metrics.jsonl)" in done.stderr
    assert (run / METRICS_NAME).read_text() == '{"epoch": 7}\n'  # (kept: it used to be deleted silently)
    (run / METRICS_NAME).unlink()
    done = ptbfast_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"No checkpoint in {run} to resume from: starting a new run" in done.stdout


@pytest.mark.parametrize("args, says", [
    (["--impl", "torch"], "add --json"), (["--repeat", "3"], "--repeat alternates"),
    (["--precisions", "--ranks", "2"], "one thing at a time: drop --ranks or --precisions"),
    (["--gemm", "--profile"], "drop --gemm or --profile"), (["--json", "--ranks", "2"], "drop --ranks or --json"),
    (["--gemm", "--json", "--impl", "torch"], "add --json"), (["--gemm", "--config", "test"], "drop --config"),
    (["--gemm", "--steps", "3", "--hidden-size", "8"], "drop --steps and config overrides"),
    (["--config", "test", "--ranks", "3"], "error: batch_size 20 cannot be split over 3 ranks"),
    (["--config", "test", "--ranks", "2", "--threads", "4000"], f"more than {ptbfast.ops.MAX_THREADS} threads")])
def test_bench_refuses_flags_it_would_ignore(args, says, tmp_path):
    done = ptbfast_cli("bench", *args, cwd=tmp_path)
    assert done.returncode != 0 and says in done.stderr, done.stderr


@pytest.mark.parametrize("args", [["train", "--threads", "0"], ["train", "--checkpoint-every", "-1"],
                                  ["train", "--tensorboard-every", "0"], ["bench", "--steps", "0"],
                                  ["eval", "--checkpoint", "x", "--threads", "-2"], ["bench", "--repeat", "two"],
                                  ["train", "--seed", "-1"], ["generate", "--checkpoint", "x", "--seed", "-1"],
                                  ["train", "--threads", "100000"], ["generate", "--checkpoint", "x", "--threads",
                                                                     str(ptbfast.ops.MAX_THREADS + 1)]])
def test_counts_out_of_range_are_usage_errors(args, tmp_path):
    done = ptbfast_cli(*args, cwd=tmp_path)
    assert done.returncode == 2 and re.search("must be [<>]= |not an integer", done.stderr), done.stderr
    assert "Traceback" not in done.stderr


def test_main_in_a_process_that_goes_on_leaves_warnings_as_they_were(capsys):
    import warnings

    from ptbfast.__main__ import main

    before = warnings.formatwarning
    assert main(["info"]) == 0 and warnings.formatwarning is before  # (its one-line format is the command's)
    assert json.loads(capsys.readouterr().out)["version"] == ptbfast.__version__


def test_max_epochs_and_max_max_epoch_must_agree(data_dir, tmp_path):
    done = ptbfast_cli("train", "--data-path", data_dir, *cli_args(max_max_epoch=2), "--max-max-epoch", "3",
                       cwd=tmp_path)
    assert done.returncode == 2 and "same setting" in done.stderr


# ---- a checkpoint named on the command line is that file or an error --------------------------------

USING_A_MODEL = {  # every command that loads --checkpoint, and the other arguments it needs
    "eval": lambda tmp_path, data_dir: ["--data-path", data_dir],
    "generate": lambda tmp_path, data_dir: ["--prompt", "w01 w02", "--words", "5", "--seed", "0"],
    "embeddings": lambda tmp_path, data_dir: ["--nearest", "w01"],
    "export": lambda tmp_path, data_dir: ["--format", "safetensors", tmp_path / "model.safetensors"],
}
if importlib.util.find_spec("safetensors") is None:  # (an extra: without it export says so first)
    del USING_A_MODEL["export"]


@pytest.mark.parametrize("kind", list(DAMAGED_CHECKPOINTS))
def test_an_unusable_named_checkpoint_is_an_error_never_the_previous_one(trained, data_dir, tmp_path, kind):
    path, says = damaged_checkpoint(tmp_path, trained[0], kind)
    ptbfast.load(checkpoint.previous_path(path))  # a good checkpoint.npz.prev sits beside it
    results = run_together([[name, "--checkpoint", path, *extra(tmp_path, data_dir)]
                            for name, extra in USING_A_MODEL.items()], cwd=tmp_path)
    for name, done in zip(USING_A_MODEL, results):
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert done.stdout == "", name  # no perplexity, no generated text, no neighbours, nothing written
        (message,) = done.stderr.splitlines()  # one line, no traceback
        assert message.startswith("error: ") and str(path) in message and says in message, (name, message)
        assert ".prev" not in message, (name, message)
    assert not (tmp_path / "model.safetensors").exists()


def test_embeddings_checks_every_word_before_printing_and_needs_something_to_do(trained, tmp_path):
    ckpt = trained[0] / CHECKPOINT_NAME
    unknown, idle = run_together([["embeddings", "--checkpoint", ckpt, "--nearest", "w01", "zzz"],
                                  ["embeddings", "--checkpoint", ckpt]], cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stdout == "", unknown.stdout  # (w01's line was printed first)
    assert unknown.stderr == "error: 'zzz' is not in the vocabulary\n"  # (a KeyError's text, not its repr)
    assert idle.returncode == 2 and idle.stdout == ""
    assert idle.stderr == "error: nothing to do: give --nearest WORD ... and/or --plot PNG\n"


def test_resume_from_an_unusable_checkpoint_uses_the_previous_one_and_says_why(trained, data_dir, tmp_path):
    save, out = trained
    run = tmp_path / "run"
    shutil.copytree(save, run)
    path, says = damaged_checkpoint(run, save, "corrupt")
    previous = checkpoint.previous_path(path)
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", run, *TRAINED, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    (warning,) = [line for line in lines if line.startswith("warning:")]
    assert warning.startswith(f"warning: not resuming from {path}: checkpoint {path} is {says}")
    assert warning.endswith(f"; resuming from the previous checkpoint {previous} instead")
    resumed = f"Resumed from {previous} at epoch 3, step 0"  # .prev: the end of epoch 2
    assert resumed in lines and lines.index(warning) < lines.index(resumed)
    assert value("Test Perplexity:", done.stdout) == value("Test Perplexity:", out)  # epoch 3 again, same bits


# ---- killed and resumed ----------------------------------------------------------------------------

def start_and_interrupt(data_dir, save, sig):
    """Start a training run that checkpoints every step; send ``sig`` once the first checkpoint exists
    (the run waits there for a signal: tests/signal_train_worker.py)."""
    worker = Path(__file__).with_name("signal_train_worker.py")
    args = ["--data-path", data_dir, "--save-path", save, *TRAINED, "--checkpoint-every", "1"]
    proc = subprocess.Popen([sys.executable, str(worker), *map(str, args)],
                            env=light_env(), cwd=save, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (save / CHECKPOINT_NAME).exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def resume_and_compare(data_dir, save, trained):
    """Resume the run in ``save`` and check that it ends exactly as the uninterrupted ``trained``."""
    _, meta, _ = checkpoint.load(save / CHECKPOINT_NAME)
    pos = meta["position"]
    assert not pos["finished"]  # interrupted (within epoch 1: the first checkpoint is at step 1)
    done = ptbfast_cli("train", "--data-path", data_dir, "--save-path", save, *TRAINED, "--resume", cwd=save)
    assert done.returncode == 0, done.stderr
    assert f"Resumed from {save / CHECKPOINT_NAME} at epoch {pos['epoch'] + 1}, step {pos['step']}" in done.stdout
    assert not [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    params, meta, _ = checkpoint.load(save / CHECKPOINT_NAME)
    expected_params, expected_meta, _ = checkpoint.load(trained[0] / CHECKPOINT_NAME)
    assert same_params(params, expected_params)
    assert epochs_of(meta["position"]["history"]) == epochs_of(expected_meta["position"]["history"])
    assert value("Test Perplexity:", done.stdout) == value("Test Perplexity:", trained[1])
    rows = [json.loads(line) for line in (save / METRICS_NAME).read_text().splitlines()]
    assert [row.get("epoch") for row in rows] == [1, 2, 3, None]


def test_killed_with_sigkill_resumes_to_the_same_result(data_dir, tmp_path, trained):
    code, _, err = start_and_interrupt(data_dir, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL, err  # killed, not finished
    resume_and_compare(data_dir, tmp_path, trained)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])  # (SIGUSR1: the graceful stop under Open MPI)
def test_a_stop_signal_saves_exits_128_plus_it_and_resumes(data_dir, tmp_path, trained, sig):
    code, out, err = start_and_interrupt(data_dir, tmp_path, sig)
    assert code == 128 + sig, err  # the shell's code for death by that signal
    assert f"Stopped by signal {int(sig)} at epoch" in out
    assert f"checkpoint saved to {tmp_path / CHECKPOINT_NAME}" in out
    assert "Test Perplexity" not in out
    resume_and_compare(data_dir, tmp_path, trained)


# ---- where the data comes from ---------------------------------------------------------------------

def test_missing_data_directory(tmp_path):
    missing = tmp_path / "no-such-data"
    done = ptbfast_cli("train", "--data-path", missing, *cli_args(), cwd=tmp_path)
    assert done.returncode == 2
    assert str(missing) in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_download_goes_to_the_cache_whatever_ptbfast_data_says(tmp_path, data_dir):
    # Files already in the cache are verified, not fetched: the synthetic corpus's are not PTB's, and
    # it is the cache's files the error names, never those PTBFAST_DATA points to.
    cache = tmp_path / "cache"
    shutil.copytree(data_dir, cache)
    runs = [["--cache-dir", cache, light_env(PTBFAST_DATA=data_dir)],
            ["--cache-dir", cache, light_env(PTBFAST_DATA=tmp_path / "no-such-data")],
            [light_env(PTBFAST_DATA=data_dir, PTBFAST_CACHE=cache)]]
    for *args, env in runs:
        done = ptbfast_cli("download", *args, cwd=tmp_path, env=env)
        assert done.returncode == 2 and done.stdout == "", done.stdout
        assert done.stderr.startswith(f"error: {cache / 'ptb.train.txt'} has md5 "), done.stderr
        assert "not f26c4b92c5fdc7b3f8c7cdcb991d8420" in done.stderr and "download again" in done.stderr


@pytest.mark.skipif(not os.environ.get("PTBFAST_DATA") or not ptbfast.datasets.has_ptb_files(
    Path(os.environ["PTBFAST_DATA"])), reason="needs Mikolov's PTB files where PTBFAST_DATA points")
def test_download_verifies_the_real_ptb_files_in_the_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in PTB_FILES:  # (only these: the directory may hold more)
        shutil.copyfile(Path(os.environ["PTBFAST_DATA"]) / name, cache / name)
    done = ptbfast_cli("download", "--cache-dir", cache, cwd=tmp_path, env=light_env(PTBFAST_DATA=None))
    assert done.returncode == 0 and done.stdout.strip() == str(cache), done.stderr


def test_no_data_anywhere_explains_how_to_get_it(tmp_path):
    env = light_env(PTBFAST_DATA=None, PTBFAST_CACHE=None, HOME=tmp_path)
    done = ptbfast_cli("train", *cli_args(), cwd=tmp_path, env=env)
    assert done.returncode == 2
    err = done.stderr
    assert "PTB data not found" in err and "--data-path" in err and "PTBFAST_DATA" in err
    assert "python -m ptbfast download" in err and all(name in err for name in PTB_FILES)
    assert str(tmp_path / ".cache" / "ptbfast" / "ptb") in err  # the cache it looked in, under $HOME
    assert "Traceback" not in err


def test_data_from_environment_variable(tmp_path, data_dir):
    done = ptbfast_cli("train", *cli_args(max_max_epoch=1), cwd=tmp_path, env=light_env(PTBFAST_DATA=data_dir))
    assert done.returncode == 0, done.stderr
    assert f"Data: {data_dir} (vocabulary {VOCAB_SIZE}" in done.stdout
    assert "No --save-path: no checkpoint or metrics.jsonl will be written" in done.stdout
    value("Test Perplexity:", done.stdout)


# ---- bench and info --------------------------------------------------------------------------------

def test_bench_json_has_the_documented_fields_from_real_steps(tmp_path):
    done = ptbfast_cli("bench", "--config", "test", "--steps", "2", "--json", "--vocab-size", "50", "--hidden-size",
                       "8", "--tie-weights", "--grad-norm", "dense", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("train_wps", "eval_wps", "eval_b1_wps", "peak_rss_mb", "train_gflops", "eval_gflops"):
        assert result[key] > 0, key
    assert result["impl"] == "ptbfast" and result["threads"] == 1


def test_bench_profile_prints_both_precisions_for_training_and_eval(tmp_path):
    done = ptbfast_cli("bench", "--profile", "--config", "test", "--steps", "2", "--vocab-size", "50", "--hidden-size",
                       "8", "--keep-prob", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tables = done.stdout.strip().split("\n\n")
    assert len(tables) == 2
    for table, title in zip(tables, ["training", "evaluation (forward only)"]):
        lines = table.splitlines()
        assert lines[0] == f"ms per {title} step, 20 x 2 words, 1 threads"
        assert "fp32 ms" in lines[1] and "bf16 ms" in lines[1]
        rows = {line.split("|")[0].strip(): line for line in lines[3:]}
        assert set(rows) == {"embedding", "lstm input products", "recurrent products", "gate math", "output products",
                             "softmax pass", "bf16 rounding", "dropout masks", "update", "python overhead", "total",
                             "of it bf16 packing"}
        assert rows["total"].split("|")[1].split()[1] == "100.0"
        assert float(rows["of it bf16 packing"].split("|")[1].split()[0]) == 0.0  # (fp32 packs nothing)


def test_info_prints_json_with_the_blas(tmp_path):
    done = ptbfast_cli("info", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["blas"] in ("mkl", "openblas")
    assert info["openmp_threads"] == 1  # OMP_NUM_THREADS is honoured


@pytest.mark.parametrize("limit, says", [({"OMP_THREAD_LIMIT": "1"}, "OMP_THREAD_LIMIT=1 caps OpenMP's teams below 2"),
                                         ({"OMP_DYNAMIC": "true"}, "OMP_DYNAMIC is on")])
def test_threads_that_openmp_may_withhold_are_named(limit, says, tmp_path):
    """OMP_THREAD_LIMIT and OMP_DYNAMIC let OpenMP run fewer threads than --threads asks for, while
    the run prints and times the count asked for: info shows them, and --threads beyond them warns."""
    clear = {name: None for name in ("OMP_THREAD_LIMIT", "OMP_DYNAMIC", "OMP_THREAD_LIMIT_ALL", "OMP_DYNAMIC_ALL")}

    def run(*args, **env):
        return ptbfast_cli(*args, cwd=tmp_path, env=light_env(**{**clear, **env}))

    info = json.loads(run("info", **limit).stdout)
    assert (info["openmp_thread_limit"], info["openmp_dynamic"]) == ((1, False) if "OMP_THREAD_LIMIT" in limit
                                                                      else (0, True))
    args = ["bench", "--config", "test", "--steps", "1", "--json", "--vocab-size", "50", "--hidden-size", "8"]
    warned = run(*args, "--threads", "2", **limit)
    assert warned.returncode == 0, warned.stderr
    assert f"warning (RuntimeWarning): --threads 2 asked for, but {says}" in warned.stderr
    # Without --threads: OMP_NUM_THREADS's count (or the cores), at most OMP_THREAD_LIMIT, and no warning.
    by_environment = run(*args, **limit, OMP_NUM_THREADS=2)
    assert by_environment.returncode == 0 and "asked for" not in by_environment.stderr, by_environment.stderr
    assert json.loads(by_environment.stdout.splitlines()[-1])["threads"] == (1 if "OMP_THREAD_LIMIT" in limit else 2)
    quiet = run(*args, "--threads", "1", **limit)
    assert quiet.returncode == 0 and "asked for" not in quiet.stderr, quiet.stderr
    plain = run(*args, "--threads", "2")
    assert plain.returncode == 0 and "asked for" not in plain.stderr, plain.stderr
    assert json.loads(run("info").stdout)["openmp_thread_limit"] == 0
