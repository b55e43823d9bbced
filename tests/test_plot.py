"""gpuviz.plot: timeline and breakdown on a real 4-rank run and on synthetic runs."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from gpuviz import plot
from gpuviz.plot import spans as plot_spans
from gpuviz.run.categories import CATEGORIES
from gpuviz.run.load import _build

_spec = importlib.util.spec_from_file_location(
    "timeline_size", Path(__file__).resolve().parents[1] / "benchmarks" / "timeline_size.py")
timeline_size = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timeline_size)
synthetic_run = timeline_size.synthetic_run


@pytest.fixture(scope="module")
def small():
    return synthetic_run(4, 120)        # 12 steps; rank 3 stopped by an error


def legend_names(fig):
    """Legend entries in the order shown (plotly sorts by legendrank, then trace order)."""
    shown = [t for t in fig.data if t.showlegend is not False]
    return [t.name for t in sorted(shown, key=lambda t: 1000 if t.legendrank is None else t.legendrank)]


def span_bars(fig):
    return [t for t in fig.data if t.type == "bar" and t.name != "interrupted (rank stopped)"]


@pytest.mark.slow
def test_timeline_real_run_bars(ddp_run):
    run = ddp_run
    fig = plot.timeline(run)
    bars = span_bars(fig)
    assert {t.type for t in fig.data} == {"bar"}
    assert sum(len(t.x) for t in bars) == len(run.spans)
    present = [c for c in CATEGORIES if c in set(run.spans["cat"])]
    assert legend_names(fig) == present
    hover = "\n".join(h for t in bars for h in t.hovertext)
    for name in run.spans["name"].unique():
        assert f"<b>{name}</b>" in hover
    assert "step 3" in hover and "KiB" in hover and "bytes: —" in hover and " ms from " in hover
    # comm-lane buckets sit below (greater y, axis reversed) the main bar of their rank
    comm = next(t for t in bars if t.name == "comm")
    assert sum(y % 1 > 0.25 for y in comm.y) == (run.spans["lane"] == "comm").sum()
    assert fig.layout.xaxis.title.text.startswith("time (s)")
    assert list(fig.layout.yaxis.ticktext) == [f"rank {r}" for r in range(4)]


@pytest.mark.slow
def test_titles_say_what_the_run_was_not_its_folder(ddp_run):
    for fig in (plot.timeline(ddp_run), plot.breakdown(ddp_run)):
        title = fig.layout.title.text
        assert ddp_run.path.name not in title
        assert f"on {ddp_run.world_size} ranks (gloo)" in title and ":" in title


def test_timeline_picks_ranks_and_steps(ddp_run):
    run = ddp_run
    fig = plot.timeline(run, ranks=[3, 1], steps=range(2, 4))
    want = run.spans[run.spans["rank"].isin([1, 3]) & run.spans["step"].isin([2, 3])]
    assert sum(len(t.x) for t in span_bars(fig)) == len(want)
    assert list(fig.layout.yaxis.ticktext) == ["rank 3", "rank 1"]


@pytest.mark.slow
def test_breakdown_matches_summary(ddp_run):
    run = ddp_run
    s = run.summary()
    fig = plot.breakdown(run)
    by = {t.name: np.asarray(t.x, float) for t in fig.data}
    main = [t for t in fig.data if t.name != "comm beside it (DDP)"]
    for col in ["compute", "optimizer", "data"]:
        np.testing.assert_allclose(by[col], s[col], atol=1e-9)
    np.testing.assert_allclose(by["untraced (no span)"], s["untraced"], atol=1e-9)
    np.testing.assert_allclose(by.get("comm", 0), s["comm"], atol=1e-9)
    np.testing.assert_allclose(by["comm beside it (DDP)"], s["comm_lane"], atol=1e-9)
    np.testing.assert_allclose(sum(np.asarray(t.x, float) for t in main), s["wall"], atol=1e-9)
    norm = plot.breakdown(run, normalize=True)
    total = sum(np.asarray(t.x, float) for t in norm.data if t.name in {t.name for t in main})
    np.testing.assert_allclose(total, 1.0, atol=1e-9)
    assert "of wall time" in norm.data[0].hovertext[0] and " s = " in norm.data[0].hovertext[0]
    assert norm.layout.xaxis.tickformat == ".0%"


def test_breakdown_stack_is_wall_time(small):
    s = small.summary()
    fig = plot.breakdown(small, normalize=True)
    assert "untraced (no span)" in legend_names(fig)
    main = [t for t in fig.data if "beside" not in t.name]
    np.testing.assert_allclose(sum(np.asarray(t.x, float) for t in main), 1.0, atol=1e-9)
    secs = plot.breakdown(small)
    for t in secs.data:
        if t.name in CATEGORIES and t.name != "comm":
            np.testing.assert_allclose(t.x, s[t.name], atol=1e-9)


def test_interrupted_and_errors_are_marked(small):
    fig = plot.timeline(small)
    cut = next(t for t in fig.data if t.name == "interrupted (rank stopped)")
    assert len(cut.x) == 1 and "interrupted" in cut.hovertext[0]
    err = next(t for t in fig.data if t.name.startswith("error"))
    assert "RuntimeError: CUDA error" in err.hovertext[0] and list(err.y) == [3.0]


def test_bad_arguments_name_what_is_allowed(small):
    with pytest.raises(ValueError, match=r"ranks=\[7\].*0-3"):
        plot.timeline(small, ranks=[7])
    with pytest.raises(ValueError, match=r"steps=.*0-12"):
        plot.timeline(small, steps=500)
    with pytest.raises(ValueError, match="max_spans"):
        plot.timeline(small, max_spans=0)


def test_run_without_spans_is_refused():
    empty = _build(Path("empty"), {0: [{"ph": "M", "name": "gpuviz_meta", "pid": 0, "args": {}}]}, [])
    for fn in (plot.timeline, plot.breakdown):
        with pytest.raises(ValueError, match="no spans to draw"):
            fn(empty)


def test_webgl_without_merging_draws_every_span():
    run = synthetic_run(8, 1000)
    fig = plot.timeline(run)
    lines = [t for t in fig.data if t.type == "scattergl" and t.mode == "lines"
             and t.name != "interrupted (rank stopped)"]
    assert sum(len(t.x) // 3 for t in lines) == len(run.spans)
    assert "merged" not in fig.layout.title.subtitle.text


def test_64_ranks_by_10000_spans_is_merged_and_bounded():
    run = synthetic_run(64, 10_000)
    t0 = time.perf_counter()
    fig = plot.timeline(run)
    took = time.perf_counter() - t0
    size = len(fig.to_json())
    assert took < 20, f"timeline took {took:.1f} s"
    assert size < 30e6, f"figure JSON is {size / 1e6:.1f} MB"
    assert "640,001 spans" in fig.layout.title.subtitle.text and "merged" in fig.layout.title.subtitle.text
    hover = [h for t in fig.data if t.mode == "markers" and t.type == "scattergl" for h in t.hovertext]
    assert any("spans merged" in h for h in hover)
    assert legend_names(fig)[:5] == ["compute", "comm", "optimizer", "data", "idle"]
    assert len(fig.layout.yaxis.ticktext) == 64


def test_units():
    assert plot_spans._bytes(857092) == "837 KiB"
    assert plot_spans._bytes(None) == "—" and plot_spans._bytes(12) == "12 B"
    assert plot_spans._bytes(3 * 2**30) == "3 GiB"
    assert plot_spans._dur(0.00519) == "5.19 ms" and plot_spans._dur(2.5) == "2.5 s"


def test_the_books_copy_of_a_figure_fits_its_column():
    """A figure drawn at a fixed width for JupyterLab takes its page's width in the book."""
    import plotly.graph_objects as go

    from gpuviz.plot.notebook import _OfflineHtmlRenderer

    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2])).update_layout(width=1150, height=400)
    html = _OfflineHtmlRenderer().to_mimebundle(fig.to_dict())["text/html"]
    assert "width:100%" in html.replace(" ", "") and '"responsive": true' in html
    assert '"width":1150' not in html and '"height":400' in html
    assert fig.layout.width == 1150          # the figure itself is left as it was
