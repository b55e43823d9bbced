"""Sphinx extension for the gpuviz book: run each lab from its page.

At the top of every lab page, a box says how to run the lab and offers two downloads that
this build wrote next to the pages (so they work offline too):

- ``notebooks/<lab>.ipynb``: the notebook as this build executed it, with its outputs;
  its chapter links point into the repository again (``../book/<chapter>.md``), so it
  opens in a clone's ``labs/`` folder with working links;
- ``solutions/<lab>.py``: the lab's solutions (``labs/solutions/``).

A published build (``book/published_config.py``: the repository's address in
``repository.url``) adds a Binder link to the lab in that repository, which Binder builds
from the repository's ``environment.yml`` (torch's CPU build) and ``start`` (the labs on 2
ranks, which Binder's memory holds). jupyter-book's own launch
buttons are off: they would point at ``book/labs/``, a copy that only the build makes.

>>> binder_url("https://github.com/you/gpuviz", "labs/00_meet_your_cluster")
'https://mybinder.org/v2/gh/you/gpuviz/HEAD?urlpath=lab/tree/labs/00_meet_your_cluster.ipynb'
>>> binder_url("https://gitlab.com/you/gpuviz", "labs/00_meet_your_cluster") is None
True
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

BINDER = "https://mybinder.org/v2/gh/{repo}/HEAD?urlpath=lab/tree/{path}.ipynb"
_GITHUB = re.compile(r"https://github\.com/([^/\s]+/[^/\s]+?)(?:\.git)?/?")
# book/build.sh rewrote ../book/<chapter> to ../<chapter> for the book; the download goes back.
_CHAPTER_LINK = re.compile(r"\]\(\.\./(?!book/)")


def binder_url(repository: str, docname: str) -> str | None:
    """The Binder link to ``docname`` (``labs/<lab>``) in a GitHub ``repository``, else None."""
    m = _GITHUB.fullmatch(repository or "")
    return BINDER.format(repo=m.group(1), path=docname) if m else None


def _labs(app: Sphinx) -> Path:
    return Path(app.srcdir) / "labs"


def _box(app: Sphinx, docname: str) -> str:
    lab = docname.removeprefix("labs/")
    up = "../" * docname.count("/")
    theme = app.config.html_theme_options or {}
    # Unpublished, jupyter-book still fills in its own repository; only a published build
    # (book/published_config.py) turns the repository button on.
    repository = theme.get("repository_url", "") if theme.get("use_repository_button") else ""
    binder = binder_url(repository, docname)
    solutions = (_labs(app) / "solutions" / f"{lab}.py").is_file()
    parts = [f'<a href="{up}notebooks/{lab}.ipynb" download>the notebook with these outputs</a>']
    if solutions:
        parts.append(f'<a href="{up}solutions/{lab}.py" download>its solutions</a>')
    run = ("on your machine: <code>make lab</code> in a clone of the repository, then open "
           f"<code>labs/{html.escape(lab)}.ipynb</code> (4 CPU processes by default; no GPU needed)")
    if binder:
        run += (f'; or in the browser on <a href="{html.escape(binder)}">Binder</a> '
                "(a free, shared machine with less memory, so the labs run 2 ranks there; the first "
                "start builds the environment, which takes minutes)")
    return ('<div class="admonition tip gpuviz-run-lab"><p class="admonition-title">Run this lab</p>'
            f"<p>Run it {run}.</p><p>Download {' and '.join(parts)}"
            " (written by the build of this page).</p></div>")


def _on_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    body = context.get("body")
    if pagename.startswith("labs/") and body:
        # Under the lab's title, where a reader looks first.
        title = body.find("</h1>")
        at = title + len("</h1>") if title >= 0 else 0
        context["body"] = body[:at] + _box(app, pagename) + body[at:]


def _on_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    executed = out.parent / "jupyter_execute" / "labs"
    for nb in sorted(_labs(app).glob("*.ipynb")):
        done = executed / nb.name
        if not done.is_file():
            logger.warning("no executed notebook for %s: its page offers no download", nb.stem,
                           type="gpuviz", subtype="no_download")
            continue
        (out / "notebooks").mkdir(exist_ok=True)
        text = _CHAPTER_LINK.sub("](../book/", done.read_text(encoding="utf-8"))
        (out / "notebooks" / nb.name).write_text(text, encoding="utf-8")
    solutions = sorted((_labs(app) / "solutions").glob("*.py"))
    if solutions:
        (out / "solutions").mkdir(exist_ok=True)
        for py in solutions:
            shutil.copyfile(py, out / "solutions" / py.name)


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", _on_page)
    app.connect("build-finished", _on_finished)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
