"""The hardware catalogue, topology parsing, the recorded DGX A100, and their figures."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from gpuviz import plan
from gpuviz.plot.hardware import hardware_ladder, topology
from gpuviz.sharing import hardware

DATA = Path(hardware.__file__).parents[1] / "data"


# -- the catalogue ------------------------------------------------------------------------------

@pytest.mark.parametrize("row", hardware.CATALOGUE, ids=lambda r: r["name"])
def test_every_rung_has_a_source_a_kind_and_a_positive_bandwidth(row):
    assert row["bytes_per_s"] > 0 and math.isfinite(row["bytes_per_s"])
    assert row["kind"] in hardware.KINDS
    assert row["published"]
    assert "http" in row["source"] or "Specification" in row["source"] or "IEEE" in row["source"]
    if row["latency_s"] is not None:                   # a latency only with its source
        assert row["latency_s"] > 0 and "http" in (row["latency_source"] or "")


def test_catalogue_covers_the_ladder_and_names_are_unique():
    names = [r["name"] for r in hardware.CATALOGUE]
    assert len(names) == len(set(names))
    for word in ("HBM2e", "HBM3 ", "HBM3e", "NVLink 3", "NVLink 4", "NVLink 5", "PCIe 4.0", "PCIe 5.0",
                 "HDR", "NDR", "XDR", "100 GbE", "400 GbE"):
        assert any(word in n for n in names), word


def test_published_numbers_per_direction():
    gb = {r["name"]: r["bytes_per_s"] / 1e9 for r in hardware.CATALOGUE}
    assert gb["NVLink 3 (A100 SXM, per GPU)"] == 300        # 600 GB/s total
    assert gb["NVLink 4 (H100 SXM, per GPU)"] == 450        # 900 GB/s total
    assert gb["NVLink 5 (Blackwell, per GPU)"] == 900       # 1.8 TB/s total
    assert gb["InfiniBand NDR (one 400 Gb/s NIC)"] == 400 / 8
    assert gb["HBM3 (H100 SXM)"] == 3350


def test_links_is_the_catalogue_without_memory_and_model_still_uses_it():
    assert set(hardware.LINKS) == {r["name"] for r in hardware.CATALOGUE if r["kind"] != "memory"}
    assert all({"bytes_per_s", "kind", "source"} <= set(v) for v in hardware.LINKS.values())
    table = plan.allreduce_over_links(14e9, world=8, measured_busbw=1e9)
    assert len(table) == len(hardware.LINKS) + 1


def test_catalogue_dataframe_is_sorted_and_labels_measured_rows():
    df = hardware.catalogue(measured=[2e9, hardware.measured_rung(5e8, name="two hosts")])
    assert isinstance(df, pd.DataFrame)
    assert df["bytes_per_s"].is_monotonic_decreasing
    meas = df[df["label"] == "measured on this machine"]
    assert list(meas["name"]) == ["your ranks (gloo over TCP, this machine)", "two hosts"]
    assert (df.loc[df["label"] != "measured on this machine", "label"] == "published peak").all()
    assert {"name", "kind", "GB/s", "latency_s", "latency_source", "source"} <= set(df.columns)


@pytest.mark.parametrize("call, arg", [
    (lambda: hardware.link("NVLink 9"), "link="),
    (lambda: hardware.measured_rung(0), "busbw="),
    (lambda: hardware.measured_rung(1e9, kind="wormhole"), "kind="),
    (lambda: hardware.catalogue(measured="fast"), "measured="),
    (lambda: hardware.catalogue(measured=[-1.0]), "measured="),
])
def test_bad_catalogue_input_names_the_argument(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


# -- topology -----------------------------------------------------------------------------------

def test_recorded_dgx_a100_parses_to_8_by_8_with_x_on_the_diagonal():
    m = hardware.parse_topology(hardware.recorded_topology("dgx-a100"))
    assert m.shape == (8, 8) and list(m.index) == [f"GPU{i}" for i in range(8)] == list(m.columns)
    for i in range(8):
        for j in range(8):
            assert m.iat[i, j] == ("X" if i == j else "NV12")


def test_recorded_topology_is_packaged_with_its_source():
    meta = hardware.RECORDED_TOPOLOGIES["dgx-a100"]
    assert (DATA / meta["file"]).is_file()
    assert "https://github.com/gengwg/cheatsheets" in meta["source"]
    readme = (DATA / "README.md").read_text()
    assert meta["file"] in readme and "gengwg/cheatsheets" in readme
    text = hardware.recorded_topology()
    assert "Legend:" in text and "NV#  = Connection traversing a bonded set of # NVLinks" in text


def test_parse_space_aligned_output_with_nics_and_pcie_codes():
    text = """        GPU0    GPU1    GPU2    GPU3    NIC0    CPU Affinity    NUMA Affinity
GPU0     X      PIX     NODE    SYS     PXB     0-15    0
GPU1    PIX      X      NODE    SYS     PXB     0-15    0
GPU2    NODE    NODE     X      PHB     SYS     16-31   1
GPU3    SYS     SYS     PHB      X      SYS     16-31   1
NIC0    PXB     PXB     SYS     SYS      X
"""
    m = hardware.parse_topology(text)
    assert m.shape == (4, 4)
    assert m.loc["GPU2", "GPU3"] == "PHB" and m.loc["GPU0", "GPU3"] == "SYS"
    assert [hardware.code_rank(c) for c in ("X", "NV18", "PIX", "PXB", "PHB", "NODE", "SYS", "SOC")] \
        == [0, 1, 2, 3, 4, 5, 6, 6]


@pytest.mark.parametrize("text", ["", "no matrix here", "\tGPU0\tGPU1\nGPU0\t X \tNV4\n",
                                  "\tGPU0\tGPU1\nGPU0\t X \tFAST\nGPU1\tFAST\t X \n", None])
def test_bad_topology_text_is_a_clear_error(text):
    with pytest.raises(ValueError, match="text"):
        hardware.parse_topology(text)


def test_unknown_recorded_topology_names_the_argument():
    with pytest.raises(ValueError, match="name="):
        hardware.recorded_topology("dgx-z9")


# -- figures ------------------------------------------------------------------------------------

def test_ladder_draws_published_peaks_by_kind():
    fig = hardware_ladder()
    assert isinstance(fig, go.Figure)
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {f"published peak: {k}" for k in hardware.KINDS}
    assert sum(len(t.x) for t in bars) == len(hardware.CATALOGUE)
    assert fig.layout.xaxis.type == "log"


def test_ladder_marks_measured_rows_and_estimates_gradient_time():
    fig = hardware_ladder(measured=1.5e9, grad_bytes=4e8, world=4)
    meas = [t for t in fig.data if t.name and t.name.startswith("measured on this machine")]
    assert len(meas) == 1 and meas[0].marker.pattern.shape == "x"
    assert "measured on this machine" in meas[0].text[0]
    ests = [t for t in fig.data if t.name == "all-reduce time, ring estimate"]   # a trace per kind
    assert all(t.marker.pattern.shape == "/" and isinstance(t.marker.color, str) for t in ests)
    assert [t.showlegend for t in ests].count(True) == 1 and "estimate" in fig.layout.xaxis2.title.text
    links = hardware.catalogue(1.5e9)
    links = links[links["kind"] != "memory"]
    want = [plan.ring_allreduce_seconds(4e8, 4, bw, 0.0 if pd.isna(lat) else lat)
            for bw, lat in zip(links["bytes_per_s"], links["latency_s"], strict=True)]
    assert sorted(x for t in ests for x in t.x) == pytest.approx(sorted(want))


def test_ladder_can_pick_links():
    fig = hardware_ladder(links=["PCIe 4.0 x16", "NVLink 4 (H100 SXM, per GPU)"])
    assert sum(len(t.x) for t in fig.data if t.type == "bar") == 2


@pytest.mark.parametrize("kwargs, arg", [
    ({"grad_bytes": 0}, "grad_bytes="), ({"grad_bytes": -5}, "grad_bytes="),
    ({"grad_bytes": "1GB"}, "grad_bytes="), ({"grad_bytes": True}, "grad_bytes="),
    ({"grad_bytes": 1e9, "world": 1}, "world="), ({"links": ["NVLink 9"]}, "links"),
    ({"measured": 0}, "measured="), ({"measured": {"bytes_per_s": 1e9, "kind": "moon"}}, "kind="),
    ({"links": ["HBM3 (H100 SXM)"], "grad_bytes": 1e9}, "links="),
])
def test_bad_ladder_input_names_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        hardware_ladder(**kwargs)


def test_topology_figure_is_a_heatmap_of_codes_ordered_fastest_to_slowest():
    m = hardware.parse_topology(hardware.recorded_topology())
    fig = topology(m, source=hardware.RECORDED_TOPOLOGIES["dgx-a100"]["source"])
    (heat,) = fig.data
    assert heat.type == "heatmap"
    assert heat.text[0][1] == "NV12" and heat.text[0][0] == "X"
    ticks = list(heat.colorbar.ticktext)
    assert ticks[0] == "SYS slowest" and ticks[-2] == "NV# fastest"
    assert "NVLinks" in fig.layout.annotations[0].text
    assert "gengwg" in fig.layout.title.subtitle.text
    assert topology(hardware.recorded_topology()).data[0].type == "heatmap"   # text works too


def test_topology_rejects_what_is_not_a_matrix():
    with pytest.raises(ValueError, match="matrix"):
        topology(pd.DataFrame({"a": [1, 2, 3]}))
