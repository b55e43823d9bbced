"""The pipeline bubble replayed with measured times: the formula when stages are equal and
hops free, more when they are not, and close to a real run's measured bubble."""
import pytest

from gpuviz.parallel.bubble_model import replay
from gpuviz.parallel.pipeline import bubble_fraction


def _equal(p, m, f=1.0, b=2.0):
    return {(s, op, i): (f if op == "F" else b) for s in range(p) for op in "FB" for i in range(m)}


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(2, 2), (2, 8), (4, 8), (3, 5)])
def test_equal_stages_and_free_hops_give_the_formula(name, p, m):
    assert replay(name, p, m, _equal(p, m))["bubble"] == pytest.approx(bubble_fraction(p, m))


def test_a_slow_stage_hops_and_gaps_each_add_to_the_bubble():
    p, m = 2, 8
    base = replay("1f1b", p, m, _equal(p, m))["bubble"]
    slow = _equal(p, m)
    slow.update({(1, op, i): 2 * v for (s, op, i), v in _equal(p, m).items() if s == 1})
    uneven = replay("1f1b", p, m, slow)["bubble"]
    hop = replay("1f1b", p, m, slow, hop=0.5)["bubble"]
    gap = replay("1f1b", p, m, slow, hop=0.5, gap={0: 0.2, 1: 0.2})
    assert base < uneven < hop
    assert gap["window"] > replay("1f1b", p, m, slow, hop=0.5)["window"]
    # the slow stage sets the pace: it works 2 x 3 x m and idles only in the fill and drain
    assert replay("gpipe", p, m, slow)["busy"][1] == pytest.approx(6.0 * m)


def test_a_missing_duration_is_named():
    with pytest.raises(ValueError, match=r"durations: no time for 8 operations, e.g. \(0, 'F', 0\)"):
        replay("gpipe", 2, 2, {})
