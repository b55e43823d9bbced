"""Claims computed from a run, their audit, the untraced time, and the hint a check gives
when the learner's own function raises."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from gpuviz import checks
from gpuviz.classroom.audit import audit
from gpuviz.classroom.claims import Claims, paragraph
from gpuviz.run.untraced import untraced_parts


def test_each_claim_is_a_sentence_and_a_line_in_the_claims_file(tmp_path):
    path = tmp_path / "claims.jsonl"
    say = Claims("00", path=path)
    a = say.either("faster", 2.0 > 1.0, "faster ({x:.1f})", "slower ({x:.1f})", expect=True, x=2.0)
    b = say.within("wait", predicted=0.10, measured=0.13, tolerance=0.2, text="{measured_ms:.0f} ms")
    c = say.value("n", "{n} ranks", n=4)
    assert str(a) == "faster (2.0)" and str(c) == "4 ranks"
    assert str(b) == "130 ms (outside the 20% this lab allows: see why below)."
    assert str(paragraph(a, "and", c)) == "faster (2.0) and 4 ranks"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["faster", "wait", "n"]
    assert [x["holds"] for x in lines] == [True, False, True]


def test_the_audit_fails_a_flipped_outcome_and_a_missed_tolerance_only(tmp_path):
    path = tmp_path / "claims.jsonl"
    say = Claims("00", path=path)
    say.either("faster", False, "faster", "slower", expect=True)
    say.within("wait", predicted=1.0, measured=1.1, tolerance=0.2, text="{ratio:.2f}")
    say.either("fork", False, "one way", "the other")                 # no expectation: either is true
    report = audit(path, labs=("00",))
    assert report.problems == ["lab 00 claim 'faster': the lab relies on it being True, this run gave "
                               "False: slower"]
    say.either("faster", True, "faster", "slower", expect=True)       # the lab run again: the latest counts
    assert audit(path, labs=("00",)).ok


def test_a_fraction_of_a_whole_is_held_in_percentage_points(tmp_path):
    """A step's bubble of 25% measured at 31% is 6 points off: within 10 points, although
    the ratio (1.24) would be outside a 20% relative tolerance."""
    path = tmp_path / "claims.jsonl"
    say = Claims("01", path=path)
    near = say.within("b16", 0.25, 0.31, 0.1, "{measured:.0%}", points=True)
    far = say.within("b2", 0.20, 0.35, 0.1, "{measured:.0%}", points=True)
    assert near.holds and str(near) == "31% (within the 10 percentage points this lab allows)."
    assert not far.holds and "outside the 10 percentage points" in str(far)
    report = audit(path)
    about = [p for p in report.problems if "claim '" in p]     # the other labs ran no claims here
    assert not report.ok and len(about) == 1
    assert "'b2': measured - predicted = +15.0 percentage points" in about[0]


def test_gpuviz_audit_exits_non_zero_and_names_the_failure(tmp_path):
    path = tmp_path / "claims.jsonl"
    Claims("00", path=path).within("wait", predicted=1.0, measured=2.0, tolerance=0.25, text="x")
    proc = subprocess.run([sys.executable, "-m", "gpuviz.cli", "audit", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "wait" in proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gpuviz.cli", "audit", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no claims file" in proc.stdout + proc.stderr


@pytest.mark.parametrize("tolerance", [0, -0.1, "5%", None])
def test_a_tolerance_must_be_a_positive_fraction(tmp_path, tolerance):
    with pytest.raises(ValueError, match="tolerance="):
        Claims("00", path=tmp_path / "c.jsonl").within("x", 1.0, 1.0, tolerance, "t")


def test_untraced_time_adds_up_to_start_up_set_up_and_gaps():
    spans = pd.DataFrame({"rank": [0, 0, 1], "lane": ["main", "main", "main"], "step": [0, 0, 0],
                          "name": ["forward", "backward", "forward"],
                          "start": [1.0, 1.5, 0.2], "end": [1.2, 2.0, 0.4]})
    events = pd.DataFrame({"rank": [0, 1], "name": ["tracer started"] * 2, "time": [0.3, 0.1]})
    t = untraced_parts(spans, events).set_index("rank")
    assert t.loc[0, ["start_up", "set_up", "between"]].round(6).tolist() == [0.3, 0.7, 0.3]
    assert t.loc[0, "untraced"] == pytest.approx(t.loc[0, "wall"] - 0.7)     # wall minus the spans
    assert t.loc[1, "start_up"] == pytest.approx(0.1) and t.loc[1, "between"] == 0


def test_a_learners_exception_becomes_a_one_line_hint_with_their_line():
    from types import SimpleNamespace

    def fraction(spans, rank):
        return spans["waiting_s"].sum()        # a column the table does not have

    run = SimpleNamespace(spans=pd.DataFrame({"rank": [0], "name": ["forward"], "dur": [0.1]}))
    r = checks.idle_fraction(fraction, run)
    assert not r and r.mistake == "raised KeyError"
    assert r.message.startswith("Your function raised KeyError: 'waiting_s'")
    assert 'spans["waiting_s"]' in r.message                       # the line of theirs that raised
    assert "rank, name, dur" in r.message.replace("'", "")         # the columns it has
