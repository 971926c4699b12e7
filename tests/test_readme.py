"""The README's example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:
            exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    text = out.getvalue()
    assert "(0, 0.693048" in text and "(1000, 0.288083" in text
    printed = re.search(r"accuracy (\d+)%", text)
    assert printed and int(printed[1]) >= 89
    # The comment beside the print says what it prints.
    commented = re.search(r"accuracy\(X, Y\):\.0%\}\"\)\s*# accuracy (\d+)%", README)
    assert commented and commented[1] == printed[1]
    assert (tmp_path / "flower.npz").is_file()
    distributed = re.search(r"distributed: ([\d.]+)% correct after (\d+) iterations", text)
    assert distributed and float(distributed[1]) > 90 and distributed[2] == "40"
    # A seeded model: the cluster fit prints the same figure on every run, and the README says which.
    assert f"# distributed: {distributed[1]}% correct after 40 iterations" in README
    # The sweep block reproduces the course's hidden-layer-size experiment (its published 91.25 % at n_h = 5).
    assert re.search(r"\*\s+5\s+5\s+\S+\s+91\.25 %", text) and "best: n_h=5" in text
    assert (tmp_path / "sweep.png").is_file() and (tmp_path / "sweep.json").is_file()


def test_readme_commands_use_extras_that_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert any("dlaccel bench" in c for c in commands) and any("pytest" in c for c in commands)
    for name in re.findall(r'"\.\[([a-z0-9,]+)\]"', README):
        for extra in name.split(","):
            assert extra in extras, f"README names extra {extra!r}, which pyproject.toml lacks"
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in ci, "CI must run the README's test command"
