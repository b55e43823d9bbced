"""The project's own files agree: dependencies, pins, the README's commands, notebooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11+")

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_deps() -> set[str]:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(r): r.split("==")[1] for r in pip if "==" in r}


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements" / "lock.txt").read_text().splitlines()
    return {_name(x): x.split("==")[1] for x in lines if "==" in x and not x.startswith("#")}


def test_environment_yml_has_the_same_dependencies_as_pyproject():
    assert set(_environment_pins()) == _pyproject_deps()


def test_environment_yml_pins_the_locked_versions():
    lock = _lock()
    for name, version in _environment_pins().items():
        if name == "torch":
            assert version == "2.13.0"
        else:
            assert lock[name] == version, name


def test_every_dependency_is_locked():
    lock = _lock()
    assert _pyproject_deps() - {"torch"} <= set(lock)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make lab" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    targets = re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M)
    assert {"lab", "book", "test"} <= set(targets)


def test_notebooks_are_committed_without_outputs():
    for nb_path in sorted((ROOT / "labs").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and not cell.get("execution_count"), nb_path.name


def test_labs_read_the_same_in_jupyterlab_and_the_book():
    """No MyST role (shown as literal text in JupyterLab) in a lab's Markdown; every chapter
    link is ../book/<file>.md, which JupyterLab opens and book/build.sh points at the page."""
    for nb_path in sorted((ROOT / "labs").glob("*.ipynb")):
        for cell in json.loads(nb_path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            assert not re.search(r"\{[a-z-]+\}`", text), (nb_path.name, text[:200])
            for target in re.findall(r"\]\((\.\./[^)#]+)", text):
                assert target.startswith("../book/"), (nb_path.name, target)
                assert (ROOT / "labs" / target).resolve().is_file(), (nb_path.name, target)
