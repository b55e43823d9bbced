"""The package's layout: one folder per topic above the run engine, imports that flow one
way (no circle, counting imports inside functions too), no module over 400 lines, and labs
that use only public names."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gpuviz"
TOPICS = ("parallel", "sharing", "sync", "energy", "plan", "workloads", "classroom")
ABOVE_TOPICS = ("plot", "checks", "widgets", "cli")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The gpuviz modules ``name`` imports anywhere in its file (functions included)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in mods and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return comps


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle(graph):
    assert _cycles(graph) == []


def test_the_run_engine_imports_no_topic(graph):
    for mod, deps in graph.items():
        if mod.startswith("gpuviz.run"):
            outside = sorted(d for d in deps if not d.startswith("gpuviz.run")
                             and d != "gpuviz._version")
            assert outside == [], f"{mod} imports {outside}: the engine must not depend on a topic"


def test_topics_import_no_figures_checks_or_apps(graph):
    for mod, deps in graph.items():
        if _top(mod) in TOPICS:
            up = sorted(d for d in deps if _top(d) in ABOVE_TOPICS)
            assert up == [], f"{mod} imports {up}, which are built on the topics"


def _top(mod: str) -> str:
    """The folder (or top-level module) of ``mod`` inside gpuviz: "run", "plot", "cli"..."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_topic_is_a_folder():
    for topic in (*TOPICS, "run", "checks", "plot"):
        assert (PKG / topic / "__init__.py").is_file(), topic
    flat = sorted(p.name for p in PKG.glob("*.py"))
    assert flat == ["__init__.py", "_version.py", "cli.py", "widgets.py"]


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_labs_import_only_public_names():
    private = []
    for nb in sorted((ROOT / "labs").glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            for m in re.finditer(r"from (gpuviz[\w.]*) import ([^\n]+)", src):
                names = [n.strip().split(" as ")[0] for n in m.group(2).strip("()").split(",")]
                private += [f"{nb.name}: {m.group(1)}.{n}" for n in names if n.startswith("_")]
            private += [f"{nb.name}: {x}" for x in re.findall(r"gpuviz(?:\.\w+)*\._\w+", src)]
    assert private == []
