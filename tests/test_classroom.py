"""The classroom kit: the seat doctor, each learner's progress, a class's grades."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pandas as pd
import pytest

from gpuviz import checks, cli
from gpuviz.classroom import doctor as doc
from gpuviz.classroom import seat
from gpuviz.classroom.grade import completion, grades
from gpuviz.classroom.progress import progress, read
from tests.conftest import ROOT


@pytest.mark.slow
def test_doctor_passes_on_this_machine(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "PASS  gloo, 4 ranks on loopback" in out and "all-reduce of ones gave [4.0] on 4 ranks" in out
    assert "This seat is ready for the labs." in out
    for name in ("python", "torch", "memory", "jupyterlab", "ipywidgets", "widget extension", "plotly offline"):
        assert f"PASS  {name}" in out, name


def test_build_native_and_doctor_say_why_without_compilers(tmp_path):
    env = {**os.environ, "CC": str(tmp_path / "no-cc"), "CXX": str(tmp_path / "no-cxx"),
           "GPUVIZ_NATIVE_CACHE": str(tmp_path / "cache")}
    built = subprocess.run([sys.executable, "-m", "gpuviz.cli", "build-native"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 1, built.stdout + built.stderr
    assert built.stdout.count("not built, runs use the Python route") == 3
    code = "from gpuviz.classroom import doctor; c = doctor.check_compiled(); print(c.ok, c.required, '|', c.fix)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("False False |") and "gpuviz build-native" in out.stdout, out.stderr


def test_a_port_taken_fails_with_its_fix(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli.main(["doctor", "--no-job", "--ports", str(port)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  ports {port}" in out and f"in use: {port}" in out
    assert f"sport = :{port}" in out and "NOT ready" in out


def test_too_little_memory_for_the_seats_fails_with_its_fix(capsys):
    assert cli.main(["doctor", "--no-job", "--seats", "100000", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    mem = next(c for c in report["checks"] if c["name"] == "memory")
    assert mem["ok"] is False and "seat at most" in mem["fix"] and not report["ok"]
    assert {c["name"] for c in report["checks"]} >= {"python", "torch", "cores", "plotly offline"}
    with pytest.raises(ValueError, match="seats="):
        doc.doctor(seats=0)


def test_ipywidgets_missing_fails_with_its_fix(tmp_path):
    (tmp_path / "ipywidgets.py").write_text("raise ImportError('planted: no ipywidgets here')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    r = subprocess.run([sys.executable, "-m", "gpuviz.cli", "doctor", "--no-job"], capture_output=True,
                       text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  ipywidgets" in r.stdout and "fix: pip install ipywidgets" in r.stdout


def test_every_check_records_progress_and_grade_collects_a_class(tmp_path, monkeypatch, capsys, mlp_run):
    for learner, answers in (("ada", [0.5, None]), ("bo", [None])):
        monkeypatch.setenv("GPUVIZ_PROGRESS_FILE", str(tmp_path / learner / "gpuviz-progress.jsonl"))
        (tmp_path / learner).mkdir()
        for a in answers:
            checks.ring_allreduce_bytes(a, nbytes=1e6, world=4)
        s = mlp_run.summary().loc[0]
        if learner == "ada":
            checks.idle_fraction(s["idle"] / s["wall"], mlp_run)
            checks.ring_allreduce_bytes(1.5e6, nbytes=1e6, world=4)
    ada = read(tmp_path / "ada" / "gpuviz-progress.jsonl")
    assert [(r["exercise"], r["ok"], r["attempt"]) for r in ada] == [
        ("ring_allreduce_bytes", False, 1), ("ring_allreduce_bytes", False, 2), ("idle_fraction", True, 1),
        ("ring_allreduce_bytes", True, 3)]
    assert ada[0]["lab"] == "02" and "Replace `None`" in ada[1]["mistake"]
    p = progress(tmp_path / "ada" / "gpuviz-progress.jsonl").set_index("exercise")
    assert p.loc["ring_allreduce_bytes", "attempts"] == 3 and p.loc["ring_allreduce_bytes", "correct"]

    assert cli.main(["progress", str(tmp_path / "ada")]) == 0
    assert "Lab 02: 1 of 2 solved, 3 attempts; to do: best_bucket_size" in capsys.readouterr().out
    (tmp_path / "cy").mkdir()                                  # a learner who never ran a check
    folders = [str(tmp_path / n) for n in ("ada", "bo", "cy")]
    assert cli.main(["grade", *folders, "--csv", str(tmp_path / "g.csv"),
                     "--figure", str(tmp_path / "g.html")]) == 0
    table = pd.read_csv(tmp_path / "g.csv")
    assert set(table["learner"]) == {"ada", "bo", "cy"} and table.loc[table["learner"] == "cy", "missing"].all()
    done = completion(grades(folders)).set_index("exercise")
    assert done.loc["ring_allreduce_bytes", ["solved", "tried", "learners"]].tolist() == [1, 2, 3]
    assert (tmp_path / "g.html").stat().st_size > 1_000_000   # plotly.js inside: opens offline


# -- the labs' rank count: one setting an instructor can lower ---------------------------------

def test_the_labs_run_4_ranks_unless_an_instructor_lowers_it(monkeypatch):
    monkeypatch.delenv(seat.ENV, raising=False)
    assert seat.ranks() == 4 and seat.counts(1, 2, 4) == (1, 2, 4) and "the default" in seat.describe()
    monkeypatch.setenv(seat.ENV, " 2 ")
    assert seat.ranks() == 2 and seat.counts(1, 2, 4) == (1, 2) and seat.counts(2, 4, 8, most=4) == (2, 4)
    assert f"{seat.ENV} sets it" in seat.describe()


@pytest.mark.parametrize("bad", ["3", "8", "0", "two", "4.0"])
def test_a_rank_count_the_labs_cannot_take_is_named(monkeypatch, bad, capsys):
    monkeypatch.setenv(seat.ENV, bad)
    with pytest.raises(ValueError, match=rf"GPUVIZ_LAB_RANKS='{re.escape(bad)}': the labs run on 2 or 4 ranks"):
        seat.ranks()
    assert cli.main(["doctor", "--no-job", "--json"]) == 1
    check = next(c for c in json.loads(capsys.readouterr().out)["checks"] if c["name"] == "lab ranks")
    assert check["ok"] is False and "GPUVIZ_LAB_RANKS" in check["fix"]


def test_counts_refuse_what_no_seat_can_run():
    with pytest.raises(ValueError, match="candidates="):
        seat.counts(0, 2)
    with pytest.raises(ValueError, match="none is at most 2 ranks"):
        seat.counts(4, 8, most=2)


@pytest.mark.slow
def test_the_lowered_setting_reaches_a_real_job_and_the_sizing(monkeypatch):
    monkeypatch.setenv(seat.ENV, "2")
    check = doc.check_gloo()
    assert check.ok and check.name == "gloo, 2 ranks on loopback", check.detail
    low_gb, high_gb = doc.seat_needs()[0], doc.seat_needs(4)[0]
    assert low_gb < high_gb
    mem = doc.check_resources(seats=10_000)[0]
    assert not mem.ok and f"on 2 ranks needs about {low_gb} GiB" in mem.fix
    monkeypatch.delenv(seat.ENV)
    mem = doc.check_resources(seats=10_000)[0]
    assert f"set {seat.ENV}=2" in mem.fix and f"about {low_gb} GiB" in mem.fix


LAB_JOB = re.compile(r"nproc=(\d+|[^\n]*)")  # a literal count, or the rest of the line


def test_every_lab_job_takes_its_rank_count_from_the_setting():
    """A literal rank count above the lowered setting would ignore it; checks' formula
    arguments (no job) are not jobs."""
    import nbformat

    for path in sorted((ROOT / "labs").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert "seat.ranks()" in nb.cells[1].source, f"{path.name}: the first code cell sets RANKS"
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            for line in cell.source.splitlines():
                for value in LAB_JOB.findall(line):
                    literal = value.strip().isdigit()
                    assert ("RANKS" in value or "MOST" in value or (literal and int(value) <= 2)
                            or line.lstrip().startswith("checks.")), f"{path.name} cell {i}: {line.strip()}"


def test_binder_runs_the_labs_on_the_ranks_its_memory_holds():
    """The repository's ``start`` (repo2docker runs it before each Binder session) lowers the
    labs to 2 ranks: a mybinder.org session has at most 2 GB, which a seat on 4 ranks
    needs more than and a seat on 2 ranks less, as benchmarks/seats.py measured."""
    env = {k: v for k, v in os.environ.items() if k != seat.ENV}
    out = subprocess.run(["bash", str(ROOT / "start"), "env"], env=env, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert f"{seat.ENV}=2" in out.splitlines()
    binder_gib = 2e9 / 2**30
    assert doc.seat_needs(2)[0] <= binder_gib < doc.seat_needs(4)[0]
