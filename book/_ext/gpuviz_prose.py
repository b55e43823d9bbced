"""The ``{computed}`` role: a number the chapter states, computed by the package at build time.

``{computed}`plan.compute-s``` becomes :func:`gpuviz.classroom.prose.value` of that name; an
unknown name fails the build (warnings are errors), naming the names there are.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx


def computed_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    from gpuviz.classroom.prose import value

    try:
        return [nodes.inline(rawtext, value(text.strip()), classes=["gpuviz-computed"])], []
    except ValueError as e:
        msg = inliner.reporter.error(f"{{computed}}: {e}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]


def setup(app: Sphinx) -> dict:
    app.add_role("computed", computed_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
