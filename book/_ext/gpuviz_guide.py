"""Sphinx directives for the instructor's guide: numbers measured when the book is built.

- ``{lab-runtime} labs/00_meet_your_cluster``: how long that lab's notebook ran in this
  build, on this machine (myst-nb's execution record), as a sentence. The numbers are put
  in after every notebook has run (a post-transform), whatever order pages are read in.
- ``{lab-runtimes}``: the same for every lab, a table with the machine it ran on.
- ``{seat-sizing}``: how many learners a server holds, from ``gpuviz/data/seats.json``
  (benchmarks/seats.py): its measurements as a table and the rule they give.
"""

from __future__ import annotations

import os
import platform

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective


class _Pending(nodes.General, nodes.Element):
    """Replaced by the numbers once every notebook has run."""


def _machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return f"{cores} cores{', ' + cpu if cpu else ''} ({platform.system()})"


def _runtime(env, docname: str) -> float | None:
    from myst_nb.sphinx_ import NbMetadataCollector

    data = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data") or {}
    return data.get("runtime")


def _mmss(s: float) -> str:
    """``s`` seconds as "42 s" or "1 min 5 s", rounded to the second first (119.6 s: 2 min 0 s)."""
    minutes, seconds = divmod(round(s), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class LabRuntime(SphinxDirective):
    required_arguments = 1

    def run(self):
        from myst_nb.sphinx_ import NbMetadataCollector

        NbMetadataCollector.set_doc_data(self.env, self.env.docname, "has_exec_table", True)
        return [_Pending(kind="one", doc=self.arguments[0])]


class LabRuntimes(SphinxDirective):
    def run(self):
        from myst_nb.sphinx_ import NbMetadataCollector

        NbMetadataCollector.set_doc_data(self.env, self.env.docname, "has_exec_table", True)
        return [_Pending(kind="all")]


def _table(header, rows) -> nodes.table:
    table = nodes.table(classes=["colwidths-auto"])
    tgroup = nodes.tgroup(cols=len(header))
    table += tgroup
    for _ in header:
        tgroup += nodes.colspec(colwidth=1)
    thead, tbody = nodes.thead(), nodes.tbody()
    tgroup += thead
    tgroup += tbody
    for cells, part in ((header, thead), *((r, tbody) for r in rows)):
        row = nodes.row()
        for c in cells:
            row += nodes.entry("", nodes.paragraph(text=str(c)))
        part += row
    return table


class SeatSizing(SphinxDirective):
    """The seat benchmark's rounds for each rank count the labs can run on, and the rule."""

    def run(self):
        from gpuviz.classroom import seat
        from gpuviz.classroom.doctor import KERNEL_GB, SEATS, seat_needs, seats_measured

        out, rows = [], []
        for ranks in sorted(SEATS, reverse=True):
            self.env.note_dependency(str(SEATS[ranks]))
            data = seats_measured(ranks)
            alone = data["rounds"][0]["mean_wall_s"]
            rows += [(ranks, r["copies"], f"{r['mean_wall_s']:.1f}", f"{r['mean_wall_s'] / alone:.2f}x",
                      f"{r['peak_one_gb']:.2f}", f"{r['peak_all_gb']:.2f}") for r in data["rounds"]]
        data = seats_measured(seat.DEFAULT)
        intro = nodes.paragraph()
        intro += nodes.Text(f"Measured by {data['measured_by']} on {data['when']}, on a machine with "
                            f"{data['cores']} cores and {data['memory_gb']:.0f} GiB: copies of Lab 00's job (")
        intro += nodes.literal(text=data["job"])
        intro += nodes.Text(f") started together, at the default of {seat.DEFAULT} ranks and at the lowered "
                            f"setting of {min(SEATS)}; slowdown is against one copy of the same job alone.")
        out += [intro, _table(["ranks per copy", "copies at once", "mean wall (s)", "slowdown",
                               "peak, one copy (GiB)", "peak, all (GiB)"], rows)]
        gb, cores = seat_needs(seat.DEFAULT)
        worst = data["rounds"][-1]
        rule = nodes.paragraph(text=(
            f"The rule this gives: one learner needs {gb} GiB (the job's peak of "
            f"{data['rounds'][0]['peak_one_gb']:.2f} GiB and {KERNEL_GB} GiB for the notebook's kernel) and "
            f"{cores} cores to run at the labs' designed speed. A server with C cores and M GiB holds "
            f"min(M / {gb}, C / {cores}) learners at full speed; more learners than C / {cores} still fit in "
            f"memory, and each job then runs about that many times slower: {worst['copies']} copies on "
            f"{data['cores']} cores took {worst['mean_wall_s'] / data['rounds'][0]['mean_wall_s']:.1f} times "
            "as long as one."))
        rule += nodes.Text(" ")
        rule += nodes.literal(text="gpuviz doctor --seats N")
        rule += nodes.Text(" applies this rule to a server.")
        out.append(rule)
        low = seats_measured(min(SEATS))
        low_gb, low_cores = seat_needs(min(SEATS))
        same = {r["copies"]: r for r in data["rounds"]}
        pairs = [(r["copies"], r["mean_wall_s"] / same[r["copies"]]["mean_wall_s"])
                 for r in low["rounds"] if r["copies"] in same]
        k, ratio = pairs[-1]
        lowered = nodes.paragraph()
        lowered += nodes.Text("On a crowded server, set ")
        lowered += nodes.literal(text=f"{seat.ENV}={min(SEATS)}")
        lowered += nodes.Text(
            f" in the environment JupyterLab starts from: every lab then runs its jobs on {min(SEATS)} ranks, "
            f"each rank doing the same work as before, so a job does {min(SEATS) / seat.DEFAULT:.0%} of the work. "
            f"A learner then needs {low_gb} GiB and {low_cores} cores, and with {k} copies at once each job "
            f"took {ratio:.2f} times as long as the {seat.DEFAULT}-rank job with {k} copies. The labs' text and "
            "checks follow the setting; the first cell of each lab prints it, and ")
        lowered += nodes.literal(text="gpuviz doctor")
        lowered += nodes.Text(" reports it.")
        out.append(lowered)
        return out


class _Fill(SphinxPostTransform):
    default_priority = 8

    def run(self, **kwargs) -> None:
        for node in list(self.document.findall(_Pending)):
            if node["kind"] == "one":
                s = _runtime(self.env, node["doc"])
                text = (f"Measured when this page was built: the notebook ran in {_mmss(s)} on the machine "
                        f"that built it ({_machine()})." if s is not None else
                        "This build did not run the notebook, so no time was measured.")
                node.replace_self(nodes.paragraph(text=text))
            else:
                from myst_nb.sphinx_ import NbMetadataCollector

                labs = sorted(d for d in NbMetadataCollector.get_doc_data(self.env) if d.startswith("labs/"))
                rows = [(d.removeprefix("labs/"), _mmss(t)) for d in labs if (t := _runtime(self.env, d))]
                total = sum(t for d in labs if (t := _runtime(self.env, d)))
                node.replace_self([_table(["lab", "whole notebook ran in"], rows),
                                   nodes.paragraph(text=f"All {len(rows)} together: {_mmss(total)}, on "
                                                        f"{_machine()}, when this page was built.")])


def setup(app: Sphinx) -> dict:
    app.add_node(_Pending)
    app.add_directive("lab-runtime", LabRuntime)
    app.add_directive("lab-runtimes", LabRuntimes)
    app.add_directive("seat-sizing", SeatSizing)
    app.add_post_transform(_Fill)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
