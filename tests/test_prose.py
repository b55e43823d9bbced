"""The chapters' computed numbers: every name a chapter uses exists and gives a value."""
import re
from pathlib import Path

import pytest

from gpuviz.classroom import prose

BOOK = Path(__file__).resolve().parents[1] / "book"
# book/README.md documents the role itself (`{computed}`name``), it is not a chapter
CHAPTERS = [p for p in BOOK.rglob("*.md") if "_build" not in p.parts and p.name != "README.md"]
USED = sorted({m for p in CHAPTERS
               for m in re.findall(r"\{computed\}`([^`]+)`", p.read_text(encoding="utf-8"))})


def test_the_chapters_use_computed_numbers():
    assert {"plan.compute-s", "published.held-out-median", "published.worst-run"} <= set(USED)


@pytest.mark.parametrize("name", USED)
def test_every_name_a_chapter_uses_gives_a_number(name):
    text = prose.value(name)
    if name.endswith("-run"):                  # a run's name, from the validation table
        from gpuviz.plan import published

        assert text in {r.name for r in published.RUNS}
    else:
        assert re.fullmatch(r"[0-9][0-9,.]*%?", text), (name, text)


def test_an_unknown_name_is_refused_with_the_names_there_are():
    with pytest.raises(ValueError, match=r"name='plan.compute': not a computed value; one of .*plan.compute-s"):
        prose.value("plan.compute")


def test_the_values_follow_the_package():
    from gpuviz.plan import published

    t = published.validation_table()
    worst = (t["ratio"] - 1).abs().max()
    assert prose.value("published.largest-error") == f"{worst:.0%}"
    held = t.loc[t["role"] == "validation", "error"].abs()
    assert prose.value("published.held-out-median") == f"{held.median():.1%}"
    assert prose.value("published.worst-run") == t.loc[held.idxmax(), "run"]


def test_the_chapter_s_reason_small_models_reach_less_of_the_peak_holds():
    """planning.md: memory-bound work is a larger share of a small model's step."""
    small = float(prose.value("published.small-memory-share").rstrip("%"))
    large = float(prose.value("published.large-memory-share").rstrip("%"))
    assert small > 3 * large
