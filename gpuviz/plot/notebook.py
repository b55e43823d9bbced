"""Plotly figures in JupyterLab and in the built book, with no network."""

from __future__ import annotations

import plotly.io as pio
from plotly.io.base_renderers import MimetypeRenderer


def setup_notebook() -> None:
    """Draw figures in JupyterLab and in the built book, with no network.

    Each figure is output twice: plotly's JSON, which JupyterLab draws, and an HTML copy
    that calls ``Plotly.newPlot`` with no ``<script>`` of plotly.js or MathJax from a CDN;
    the book serves plotly.js from its own ``_static`` folder. Call it in a lab's first cell.

    >>> setup_notebook()
    """
    pio.renderers["gpuviz"] = _OfflineHtmlRenderer()
    pio.renderers.default = "plotly_mimetype+gpuviz"


class _OfflineHtmlRenderer(MimetypeRenderer):
    """text/html holding the figure's JSON and a Plotly.newPlot call, and no script from a CDN."""

    def to_mimebundle(self, fig_dict):
        # The page's column decides the width (688 px on a desktop, the screen on a phone):
        # a figure drawn for JupyterLab at a fixed width is made responsive here.
        layout = {k: v for k, v in (fig_dict.get("layout") or {}).items() if k != "width"}
        fig_dict = {**fig_dict, "layout": {**layout, "autosize": True}}
        return {"text/html": pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False,
                                         full_html=False, default_width="100%",
                                         default_height=525, validate=False,
                                         config={"responsive": True})}
