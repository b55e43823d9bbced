"""An animated drawing of the ring all-reduce, step by step.

Drawn from :func:`gpuviz.parallel.ring.simulate_ring`, which runs the very schedule that
:func:`gpuviz.parallel.ring.ring_all_reduce` runs on tensors: the drawing and the code agree.

>>> fig = ring_allreduce(world=4)
>>> len(fig.frames)            # the start, then 3 reduce-scatter and 3 all-gather steps
7
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from gpuviz.parallel.ring import REDUCE_SCATTER, chunk_sizes, simulate_ring

__all__ = ["ring_allreduce"]

# Tableau 10, one colour per chunk (chunk colours, not the span categories' colours).
_CHUNK_COLORS = ("#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F",
                 "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F", "#BAB0AC")
_MAX_WORLD = len(_CHUNK_COLORS)
_ROW = 24                     # pixels per chunk row
_FONT = dict(family="Helvetica, Arial, sans-serif")


def ring_allreduce(world: int = 4, chunks: int | None = None, *, dtype_bytes: int = 4,
                   title: str | None = None) -> go.Figure:
    """Animated figure of a ring all-reduce on ``world`` ranks: play it, or drag the slider.

    Ranks sit on a circle. Each holds its tensor as ``world`` chunks, one coloured square
    per chunk, labelled with the ranks whose values are summed into it ("0+1+2"); the more
    ranks summed in, the darker the square, and a finished chunk (all ranks) is outlined.
    At each step every rank sends one chunk (the square riding its arrow) to the next rank:
    p-1 reduce-scatter steps add what arrives, p-1 all-gather steps pass finished chunks on.

    ``chunks``: the number of elements of the tensor; the hover text then gives each
    chunk's size (uneven when it does not divide by ``world``), ``dtype_bytes`` per element.

    >>> fig = ring_allreduce(world=3, chunks=1001)
    >>> [f.name for f in fig.frames]
    ['start', 'RS 1', 'RS 2', 'AG 1', 'AG 2']
    """
    if isinstance(world, bool) or not isinstance(world, int) or not 2 <= world <= _MAX_WORLD:
        raise ValueError(f"world={world!r}: a ring needs an integer number of ranks >= 2 "
                         f"(and at most {_MAX_WORLD} fit in one drawing)")
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1):
        raise ValueError(f"chunks={chunks!r}: give the tensor's number of elements, an integer >= 1")
    p, steps = world, simulate_ring(world)
    sizes = chunk_sizes(chunks, p) if chunks else None
    geo = _Geometry(p)
    frames = [go.Frame(name=_short(s), data=_traces(s, geo, sizes, dtype_bytes),
                       layout=dict(title=_title(s, p, title))) for s in steps]
    fig = go.Figure(data=frames[0].data, frames=frames)
    fig.update_layout(
        title=_title(steps[0], p, title), width=geo.px + 190, height=geo.px + 190,
        template="plotly_white", font=_FONT, showlegend=True, hovermode="closest",
        legend=dict(x=1.0, xanchor="left", y=0.5, yanchor="middle", font=dict(size=12),
                    itemsizing="constant", tracegroupgap=2),
        margin=dict(t=100, b=80, l=10, r=10),
        xaxis=dict(range=[-geo.half, geo.half], visible=False, fixedrange=True),
        yaxis=dict(range=[-geo.half, geo.half], visible=False, fixedrange=True,
                   scaleanchor="x", scaleratio=1),
        updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.01, xanchor="left",
                          yanchor="top", pad=dict(t=0, r=10), showactive=False, buttons=[
                              dict(label="▶ play", method="animate", args=[None, dict(
                                  frame=dict(duration=1400, redraw=True), fromcurrent=True,
                                  transition=dict(duration=500, easing="cubic-in-out"))]),
                              dict(label="❚❚ pause", method="animate", args=[[None], dict(
                                  frame=dict(duration=0, redraw=False), mode="immediate",
                                  transition=dict(duration=0))])])],
        sliders=[dict(active=0, x=0.3, len=0.7, y=0.0, yanchor="top", pad=dict(t=0),
                      currentvalue=dict(prefix="step: ", font=dict(size=12)),
                      steps=[dict(label=f.name, method="animate", args=[[f.name], dict(
                          mode="immediate", frame=dict(duration=0, redraw=True),
                          transition=dict(duration=300))]) for f in frames])])
    return fig


class _Geometry:
    """Where things go, in units of one chunk row (``_ROW`` pixels)."""

    def __init__(self, p: int):
        self.p = p
        self.block_h = p + 1.2                        # title row + one row per chunk
        self.block_w = 1.0 + 0.32 * 8                 # square + a label of up to 8 characters
        gap = 6.0                                     # room for an arrow between blocks
        need = max(self.block_h, self.block_w) + gap
        self.radius = max(need / (2 * math.sin(math.pi / p)), 0.5 * self.block_h + 4)
        self.half = self.radius + 0.5 * max(self.block_h, self.block_w) + 0.5
        self.px = max(640, int(2 * self.half * _ROW))
        self.half = self.px / (2 * _ROW)

    def center(self, r: int) -> tuple[float, float]:
        a = math.pi / 2 - 2 * math.pi * r / self.p   # rank 0 at the top, then clockwise
        return self.radius * math.cos(a), self.radius * math.sin(a)

    def row(self, r: int, c: int) -> tuple[float, float]:
        """The square of chunk ``c`` on rank ``r``."""
        x, y = self.center(r)
        return x - self.block_w / 2 + 0.5, y + self.block_h / 2 - 1.7 - c

    def arrow(self, r: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """From rank r's block to rank r+1's: the chord, cut at the blocks, moved a little to
        its right (toward the centre) so that the two arrows of a 2-rank ring do not overlap."""
        (x0, y0), (x1, y1) = self.center(r), self.center((r + 1) % self.p)
        dx, dy = x1 - x0, y1 - y0
        d = math.hypot(dx, dy)
        ux, uy = dx / d, dy / d
        cut = 0.5 * (abs(ux) * self.block_w + abs(uy) * self.block_h) + 0.6
        shift = 0.9
        sx, sy = uy * shift, -ux * shift
        return ((x0 + ux * cut + sx, y0 + uy * cut + sy), (x1 - ux * cut + sx, y1 - uy * cut + sy))


def _traces(s, geo: _Geometry, sizes, dtype_bytes) -> list:
    p = geo.p
    out = []
    ring = [(geo.radius * math.cos(2 * math.pi * i / 120), geo.radius * math.sin(2 * math.pi * i / 120))
            for i in range(121)]
    out.append(go.Scatter(x=[x for x, _ in ring], y=[y for _, y in ring], mode="lines",
                          line=dict(color="#EEEEEE", width=10), hoverinfo="skip", showlegend=False))
    tops = [geo.center(r) for r in range(p)]
    out.append(go.Scatter(x=[x for x, _ in tops], y=[y + geo.block_h / 2 - 0.5 for _, y in tops],
                          mode="text", text=[f"<b>rank {r}</b>" for r in range(p)],
                          textfont=dict(size=13, color="#333"), hoverinfo="skip", showlegend=False))
    for c in range(p):
        pts = [geo.row(r, c) for r in range(p)]
        held = [s.state[r][c] for r in range(p)]
        out.append(go.Scatter(
            x=[x for x, _ in pts], y=[y for _, y in pts], mode="markers+text", name=f"chunk {c}",
            legendgroup=f"chunk {c}", text=[_label(h, c, p) for h in held], textposition="middle right",
            textfont=dict(size=11, color="#222"),
            marker=dict(symbol="square", size=_ROW - 6, color=[_fill(c, len(h), p) for h in held],
                        line=dict(width=[2.5 if len(h) == p else 0.8 for h in held],
                                  color=["#111" if len(h) == p else _CHUNK_COLORS[c] for h in held])),
            hoverinfo="text", hovertext=[_hover(r, c, h, p, sizes, dtype_bytes) for r, h in enumerate(held)]))
    xs, ys, size, mids, where, texts, colors, hov = [], [], [], [], [], [], [], []
    for r in range(p):
        (x0, y0), (x1, y1) = geo.arrow(r)
        xs += [x0, x1, None]
        ys += [y0, y1, None]
        size += [0, 13, 0]
        mids.append(((x0 + x1) / 2, (y0 + y1) / 2))
        where.append(_outward(x1 - x0, y1 - y0))
        if s.sends:
            src, dst, c, contents = s.sends[r]
            texts.append(_label(contents, c, p))
            colors.append(_CHUNK_COLORS[c])
            what = "adds it to its own" if s.phase == REDUCE_SCATTER else "keeps it: it is finished"
            hov.append(f"<b>rank {src} → rank {dst}</b>: chunk {c}<br>carrying the sum of ranks "
                       f"{_list(contents)}<br>rank {dst} {what}" + _size(c, sizes, dtype_bytes))
        else:
            texts.append("")
            colors.append("rgba(0,0,0,0)")
            hov.append("")
    sending = bool(s.sends)
    out.append(go.Scatter(x=xs, y=ys, mode="lines+markers", name="message to the next rank",
                          line=dict(color="#555" if sending else "#C8C8C8", width=2),
                          marker=dict(symbol="arrow", size=size, angleref="previous",
                                      color="#555" if sending else "#C8C8C8"),
                          hoverinfo="skip", showlegend=True))
    out.append(go.Scatter(x=[x for x, _ in mids], y=[y for _, y in mids], mode="markers+text",
                          name="in flight this step", text=texts, textposition=where, showlegend=False,
                          textfont=dict(size=11, color="#111"), hoverinfo="text", hovertext=hov,
                          marker=dict(symbol="square", size=_ROW - 2, color=colors,
                                      line=dict(width=1.5 if sending else 0,
                                                color="#111" if sending else "rgba(0,0,0,0)"))))
    return out


def _outward(dx: float, dy: float) -> str:
    """The text position on the left of a clockwise arrow (away from the ring's centre)."""
    d = math.hypot(dx, dy)
    nx, ny = -dy / d, dx / d
    v = "top" if ny > 0.38 else "bottom" if ny < -0.38 else "middle"
    h = "right" if nx > 0.38 else "left" if nx < -0.38 else "center"
    return f"{v} {h}" if (v, h) != ("middle", "center") else "bottom center"


def _title(s, p: int, title: str | None) -> dict:
    head = title or f"Ring all-reduce on {p} ranks"
    if s.phase == "start":
        sub = "Start: each rank holds only its own data, split into one chunk per rank. Press play."
    elif s.phase == REDUCE_SCATTER:
        sub = (f"<b>Reduce-scatter step {s.index} of {p - 1}</b>: every rank sends one chunk to "
               "the next rank, which adds it to its own")
        if s.index == p - 1:
            sub += f"<br>Now each rank holds one chunk summed over all {p} ranks (outlined)"
    else:
        sub = (f"<b>All-gather step {s.index} of {p - 1}</b>: every rank passes a finished chunk "
               "to the next rank, which keeps it")
        if s.index == p - 1:
            sub += f"<br>Done: every rank holds every chunk summed over all {p} ranks"
    return dict(text=head, subtitle=dict(text=sub, font=dict(size=13)), x=0.02, xanchor="left")


def _short(s) -> str:
    return "start" if s.phase == "start" else f"{'RS' if s.phase == REDUCE_SCATTER else 'AG'} {s.index}"


def _label(contents: frozenset, c: int, p: int) -> str:
    """The ranks summed into chunk ``c`` in the order they were added: "2+3+0"."""
    if len(contents) == p:
        return "+".join(map(str, range(p))) if p <= 4 else f"all {p}"
    order = [(c + i) % p for i in range(p) if (c + i) % p in contents]
    return "+".join(map(str, order)) if len(order) <= 4 else f"{order[0]}+…+{order[-1]}"


def _fill(c: int, n: int, p: int) -> str:
    h = _CHUNK_COLORS[c].lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{0.22 + 0.78 * (n - 1) / (p - 1):.2f})"


def _hover(r, c, held, p, sizes, dtype_bytes) -> str:
    done = " (finished)" if len(held) == p else ""
    return (f"<b>rank {r}, chunk {c}</b><br>sum of ranks {_list(held)}<br>"
            f"{len(held)} of {p} contributions{done}" + _size(c, sizes, dtype_bytes))


def _size(c, sizes, dtype_bytes) -> str:
    if sizes is None:
        return ""
    return f"<br>{sizes[c]:,} elements = {sizes[c] * dtype_bytes:,} bytes"


def _list(ranks) -> str:
    return ", ".join(map(str, sorted(ranks)))
