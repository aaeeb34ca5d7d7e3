"""``python -m ptbfast``: train and eval on a tiny synthetic corpus, data-path errors, info."""

import json
import os
import re
import subprocess
import sys

import pytest

from ptbfast.datasets import PTB_FILES

from synthetic_corpus import write_corpus

TINY = ["--config", "test", "--vocab-size", "30", "--hidden-size", "8", "--num-steps", "5", "--batch-size", "4",
        "--max-epochs", "2", "--no-progress", "--checkpoint-every", "0"]


def light_env(**changes):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def ptbfast(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "ptbfast", *map(str, args)], cwd=cwd, env=env or light_env(),
                          capture_output=True, text=True, timeout=120)


def value(pattern, text):
    """The float printed after ``pattern`` (with 3 decimals) in ``text``, as the printed string."""
    found = re.findall(re.escape(pattern) + r" (\d+\.\d{3})(?:\s|$)", text)
    assert len(found) == 1, f"{pattern!r} in:\n{text}"
    return found[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    save = tmp_path_factory.mktemp("run")
    done = ptbfast("train", "--data-path", data_dir, "--save-path", save, *TINY, cwd=save)
    assert done.returncode == 0, done.stderr
    return save, done.stdout


def test_train_prints_tf_style_lines(trained):
    save, out = trained
    lines = out.splitlines()
    assert lines.index("Epoch: 1 Learning rate: 1.000") < lines.index("Epoch: 2 Learning rate: 0.500")
    for epoch in (1, 2):
        assert float(value(f"Epoch: {epoch} Train Perplexity:", out)) > 1
        assert float(value(f"Epoch: {epoch} Valid Perplexity:", out)) > 1
    assert lines[-1] == f"Test Perplexity: {value('Test Perplexity:', out)}"
    config = json.loads(out.split("Config test: ", 1)[1].splitlines()[0])
    assert (config["hidden_size"], config["num_steps"], config["batch_size"], config["vocab_size"],
            config["max_max_epoch"], config["num_layers"]) == (8, 5, 4, 30, 2, 1)
    assert (save / "checkpoint.npz").is_file() and (save / "metrics.jsonl").is_file()


def test_eval_reproduces_the_trained_perplexities(trained, data_dir):
    save, out = trained
    done = ptbfast("eval", "--checkpoint", save / "checkpoint.npz", "--data-path", data_dir, "--json", cwd=save)
    assert done.returncode == 0, done.stderr
    assert value("Test Perplexity:", done.stdout) == value("Test Perplexity:", out)
    assert value("Valid Perplexity:", done.stdout) == value("Epoch: 2 Valid Perplexity:", out)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines()]
    assert results["test"]["perplexity"] == metrics[-1]["test_perplexity"]  # the same float, bit for bit
    assert results["valid"]["perplexity"] == metrics[-2]["valid_perplexity"]


def test_a_new_run_does_not_mix_with_an_old_one(trained, data_dir, tmp_path):
    save, _ = trained
    done = ptbfast("train", "--data-path", data_dir, "--save-path", save, *TINY, cwd=save)
    assert done.returncode != 0 and "already holds a run" in done.stderr and "--overwrite" in done.stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 7}\n')
    done = ptbfast("train", "--data-path", data_dir, "--save-path", run, *TINY, "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in rows] == [1, 2, None]


def test_max_epochs_and_max_max_epoch_must_agree(data_dir, tmp_path):
    done = ptbfast("train", "--data-path", data_dir, *TINY, "--max-max-epoch", "3", cwd=tmp_path)
    assert done.returncode == 2 and "same setting" in done.stderr


def test_eval_of_a_corrupt_checkpoint_is_a_clean_error(tmp_path, data_dir):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    done = ptbfast("eval", "--checkpoint", bad, "--data-path", data_dir, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and str(bad) in done.stderr and "Traceback" not in done.stderr


def test_missing_data_directory(tmp_path):
    missing = tmp_path / "no-such-data"
    done = ptbfast("train", "--data-path", missing, *TINY, cwd=tmp_path)
    assert done.returncode == 2
    assert str(missing) in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_data_anywhere_explains_how_to_get_it(tmp_path):
    env = light_env(PTBFAST_DATA=None, PTBFAST_CACHE=None, HOME=tmp_path)
    done = ptbfast("train", *TINY, cwd=tmp_path, env=env)
    assert done.returncode == 2
    err = done.stderr
    assert "PTB data not found" in err and "--data-path" in err and "PTBFAST_DATA" in err
    assert "python -m ptbfast download" in err and all(name in err for name in PTB_FILES)
    assert str(tmp_path / ".cache" / "ptbfast" / "ptb") in err  # the cache it looked in, under $HOME
    assert "Traceback" not in err


def test_data_from_environment_variable(tmp_path, data_dir):
    done = ptbfast("train", *TINY, "--max-epochs", "1", cwd=tmp_path, env=light_env(PTBFAST_DATA=data_dir))
    assert done.returncode == 0, done.stderr
    assert f"Data: {data_dir} (vocabulary 30" in done.stdout
    value("Test Perplexity:", done.stdout)


def test_info_prints_json_with_the_blas(tmp_path):
    done = ptbfast("info", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["blas"] in ("mkl", "openblas")
    assert info["openmp_threads"] == 1  # OMP_NUM_THREADS is honoured
