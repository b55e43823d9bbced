"""Sphinx extension for the gpuviz book: interactive plotly figures with no network.

The lab notebooks draw figures with the renderer that ``gpuviz`` registers: each figure
is a ``text/html`` output holding the figure's JSON and a ``Plotly.newPlot`` call, with
no copy of plotly.js and no CDN link (plus the plotly JSON mime type, which JupyterLab
draws itself). This extension supplies the rest:

- copies ``plotly.min.js`` from the installed ``plotly`` package, the one the kernel
  also imports, into ``_build/html/_static/`` (nothing is downloaded or committed);
- loads it only on pages that hold a figure, before the figures' inline scripts;
- drops progress bars (tqdm's widgets) and replaces other ipywidgets views, which
  cannot run without a kernel, by a short note;
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
NARROW_JS = "gpuviz-narrow.js"

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
_WIDGET_VIEW = re.compile(
    r'<script type="application/vnd\.jupyter\.widget-view\+json">(.*?)</script>', re.S
)
_WIDGET_NOTE = (
    '<p class="gpuviz-widget-note">This control needs a running notebook: open the lab '
    "in JupyterLab to use it. The figures on this page are interactive as they are.</p>"
)
_PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}
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
        # _static/gpuviz-narrow.js: on a phone, panels side by side are stacked
        app.add_js_file(NARROW_JS, priority=201)
    if WIDGET_VIEW_MIME in body:
        progress = _progress_bars(_executed(app, pagename))
        context["body"] = _WIDGET_VIEW.sub(lambda m: _widget_html(m, progress), body)


def _executed(app: Sphinx, docname: str) -> Path:
    """Where myst-nb wrote the executed notebook of ``docname``."""
    return Path(app.outdir).parent / "jupyter_execute" / f"{docname}.ipynb"


def _progress_bars(executed: Path) -> set[str]:
    """Ids of the saved widgets that are, or hold, a progress bar."""
    if not executed.is_file():
        return set()
    meta = json.loads(executed.read_text(encoding="utf-8")).get("metadata", {})
    state = meta.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})

    def is_progress(model_id: str, depth: int = 0) -> bool:
        model = state.get(model_id, {})
        if model.get("model_name") in _PROGRESS_MODELS:
            return True
        children = model.get("state", {}).get("children", [])
        return depth < 8 and any(is_progress(c.removeprefix("IPY_MODEL_"), depth + 1)
                                 for c in children if isinstance(c, str))

    return {model_id for model_id in state if is_progress(model_id)}


def _widget_html(match: re.Match, progress: set[str]) -> str:
    try:
        model_id = json.loads(match.group(1)).get("model_id")
    except ValueError:
        model_id = None
    return "" if model_id in progress else _WIDGET_NOTE


def _check_figures(app: Sphinx, doctree) -> None:
    """Warn for each figure output of an executed notebook that has no text/html."""
    docname = app.env.docname
    executed = _executed(app, docname)
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
