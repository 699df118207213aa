"""Every Python example in docs/ and in README.md runs as written."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
README = ROOT / "README.md"


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of each ```python block of ``path``, ``line`` its first line's index."""
    text = path.read_text()
    return [
        (text.count("\n", 0, match.start(1)), match.group(1))
        for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S)
    ]


def run_blocks(path: Path, blocks: list[tuple[int, str]], namespace: dict) -> None:
    """Runs ``blocks`` in order in one namespace; a traceback names the line in ``path``."""
    for line, code in blocks:
        exec(compile("\n" * line + code, str(path), "exec"), namespace)


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_doc_examples_run(path, tmp_path, monkeypatch):
    """The Python blocks of each docs/*.md page run, in order, in one fresh namespace."""
    monkeypatch.chdir(tmp_path)
    run_blocks(path, python_blocks(path), {"__name__": "docs"})


def readme_namespace() -> dict:
    """What the README's snippets leave to the reader: ``X`` ``[40, 3]`` and ``y`` ``[40]``, a
    small table for ``PFNRegressor().fit(X, y)`` (features uniform on [0, 1], a smooth target plus
    noise), and ``X_new`` ``[5, 3]``, ``y_new`` ``[5]``, five more rows of it."""
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(45, 3))
    y = np.sin(4 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=45)
    return {"__name__": "readme", "X": X[:40], "y": y[:40], "X_new": X[40:], "y_new": y[40:]}


TRAINS = "pf.train("  # the README's training quickstart: 2000 steps, ~4 minutes on one CPU core


@pytest.mark.parametrize(
    "trains", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["quickstarts", "training"]
)
def test_readme_examples_run(trains, tmp_path, monkeypatch):
    """The README's Python blocks run as written, in order in one namespace: those that do not
    train (with the data names of :func:`readme_namespace`), and, marked slow, the training one."""
    blocks = [(line, code) for line, code in python_blocks(README) if (TRAINS in code) == trains]
    assert blocks, f"README.md has no Python block {'with' if trains else 'without'} {TRAINS}"
    monkeypatch.chdir(tmp_path)
    run_blocks(README, blocks, readme_namespace())
