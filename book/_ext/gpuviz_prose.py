"""Numbers and tables a chapter states, computed by the package at build time.

- ``{computed}`plan.compute-s``` becomes :func:`gpuviz.classroom.prose.value` of that name;
  an unknown name fails the build (warnings are errors), naming the names there are.
- ``{model-validation}``: the cluster model against every published run
  (:func:`gpuviz.plan.published.validation_table`) and its error by category.
"""

from __future__ import annotations

from docutils import nodes
from gpuviz_guide import _table
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def computed_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    from gpuviz.classroom.prose import value

    try:
        return [nodes.inline(rawtext, value(text.strip()), classes=["gpuviz-computed"])], []
    except ValueError as e:
        msg = inliner.reporter.error(f"{{computed}}: {e}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]


class ModelValidation(SphinxDirective):
    """Every published run, predicted and published, and the held-out error by category."""

    def run(self):
        from gpuviz.plan import published

        t = published.validation_table()
        fmt = {"mfu": lambda v: f"{v:.1%} MFU", "tflops_per_gpu": lambda v: f"{v:.0f} TFLOP/s",
               "tokens_per_s_per_gpu": lambda v: f"{v:,.0f} tokens/s"}
        # errors rounded before their sign is shown: -0.08% reads +0%, not -0%
        rows = [(r.run, r.category, r.layout, fmt[r.metric](r.published), fmt[r.metric](r.predicted),
                 f"{round(r.error, 2) + 0.0:+.0%}", r.role) for r in t.itertuples()]
        runs = _table(["run", "category", "layout", "published", "modelled", "error", "role"], rows)
        by = published.error_by_category(t)
        cats = _table(["held-out runs", "how many", "median |error|", "largest |error|"],
                      [(k, int(r.runs), f"{r.median_abs_error:.1%}", f"{r.max_abs_error:.0%}")
                       for k, r in by.iterrows()])
        return [runs, cats]


def setup(app: Sphinx) -> dict:
    app.add_role("computed", computed_role)
    app.add_directive("model-validation", ModelValidation)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
