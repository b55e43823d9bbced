"""Sphinx extension for the gpuviz book: interactive plotly figures with no network.

The lab notebooks draw figures with the renderer that ``gpuviz`` registers: each figure
is a ``text/html`` output holding the figure's JSON and a ``Plotly.newPlot`` call, with
no copy of plotly.js and no CDN link (plus the plotly JSON mime type, which JupyterLab
draws itself). This extension supplies the rest:

- copies ``plotly.min.js`` from the installed ``plotly`` package, the one the kernel
  also imports, into ``_build/html/_static/`` (nothing is downloaded or committed);
- loads it only on pages that hold a figure, before the figures' inline scripts;
- replaces ipywidgets views, which cannot run without a kernel, by a short note;
- warns (an error under ``--warningiserror``) for each figure that the book cannot
  draw: an output with the plotly JSON and no ``text/html``, which is what plotly's own
  default renderer in a kernel (``plotly_mimetype``) gives when gpuviz's is not set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.fileutil import copy_asset_file

logger = logging.getLogger(__name__)

PLOTLY_JS = "plotly.min.js"

_WIDGET_VIEW = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-view\+json">.*?</script>', re.S
)
_WIDGET_NOTE = (
    '<p class="gpuviz-widget-note">Interactive control: it works when you run this '
    "notebook in JupyterLab. The figures on this page are interactive as they are.</p>"
)
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def plotly_js_path() -> Path:
    """The plotly.js bundle shipped inside the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise FileNotFoundError(f"plotly.js not found at {path}; reinstall plotly")
    return path


def _on_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    body = context.get("body")
    if not body:
        return
    if "plotly-graph-div" in body:
        # Plain <script src> in <head>: loaded before the figures' inline scripts run.
        app.add_js_file(PLOTLY_JS, priority=200)
    if "application/vnd.jupyter.widget-view+json" in body:
        context["body"] = body = _WIDGET_VIEW.sub(_WIDGET_NOTE, body)


def _check_figures(app: Sphinx, doctree) -> None:
    """Warn for each figure output of an executed notebook that has no text/html."""
    docname = app.env.docname
    # myst-nb writes each executed notebook here (_build/jupyter_execute/<docname>.ipynb).
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"
    if not str(app.env.doc2path(docname)).endswith(".ipynb") or not executed.is_file():
        return
    cells = json.loads(executed.read_text(encoding="utf-8")).get("cells", [])
    for index, cell in enumerate(cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data and "text/html" not in data:
                logger.warning(
                    "cell %d: a plotly figure with no text/html output, so the book cannot "
                    "draw it. Set gpuviz's plotly renderer before drawing (see book/README.md).",
                    index,
                    location=docname,
                    type="gpuviz",
                    subtype="figure_not_drawn",
                )


def _on_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        copy_asset_file(str(plotly_js_path()), str(Path(app.outdir) / "_static" / PLOTLY_JS))


def setup(app: Sphinx) -> dict:
    plotly_js_path()  # fail at start-up, not after executing every notebook
    app.connect("doctree-read", _check_figures)
    app.connect("html-page-context", _on_page)
    app.connect("build-finished", _on_finished)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
