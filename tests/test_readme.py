"""The README's commands and code, tested as docs/export.md's recipes are: every ``python -m
ptbfast`` line of its shell blocks parses with the real command line, the first Python block runs,
the methods the second one calls exist, and .ci/run runs the README's test command."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from ptbfast.__main__ import build_parser
from ptbfast.lm import LanguageModel

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def ptbfast_commands() -> list:
    """The argument lists after ``python -m ptbfast`` in the README's shell blocks."""
    commands = []
    for block in blocks("sh"):
        for line in block.splitlines():
            if "python -m ptbfast " in line:
                words = shlex.split(line.split("python -m ptbfast ", 1)[1], comments=True)
                commands.append(words)
    return commands


def test_the_readme_has_its_two_set_up_commands_and_ci_runs_the_test_one():
    set_up = [b.strip() for b in blocks("sh") if b.startswith("python3 -m venv .venv")]
    assert len(set_up) == 2, set_up
    test_command = next(b for b in set_up if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


@pytest.mark.parametrize("argv", ptbfast_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_every_command_line_of_the_readme_parses(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    assert args.func is not None


def test_the_readme_lists_commands():
    assert len(ptbfast_commands()) >= 8


def test_the_first_python_block_runs():
    namespace = {}
    exec(blocks("python")[0], namespace)  # noqa: S102 (the README's own code)
    assert np.isfinite(namespace["cost"]) and set(namespace["grads"]) == set(namespace["model"].params)


def test_the_language_model_block_calls_methods_that_exist():
    block = blocks("python")[1]
    compile(block, "README.md", "exec")
    for method in re.findall(r"lm\.(\w+)\(", block):
        assert callable(getattr(LanguageModel, method, None)), method
