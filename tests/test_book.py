"""The book: it builds with every lab executed, reads offline, and draws its figures.

Each build runs ``book/build.sh`` on a copy of ``book/`` in a temporary directory, so
the tests never touch ``book/_build`` or ``book/labs`` in the working tree.
The browser test needs Chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
LAB_00 = "00_meet_your_cluster"
BUILD_TIMEOUT = 1800  # seconds: every lab runs in at most 3 minutes on 2 cores

# Anything that would make a reader's browser fetch plotly, MathJax or widgets from outside.
CDN = re.compile(r"cdn\.plot\.ly|cdn\.jsdelivr|cdnjs\.cloudflare|unpkg\.com|"
                 r"<script[^>]*\bsrc=[\"']?(?:https?:)?//", re.I)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT)]


def build_book(tmp: Path, labs: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Copy book/ into ``tmp`` and build it there from the notebooks in ``labs``."""
    book = tmp / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "labs"))
    env = dict(os.environ, VENV=sys.prefix, LABS=str(labs))
    proc = subprocess.run(["bash", str(book / "build.sh")], env=env, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT)
    return proc, book / "_build" / "html"


def tail(proc: subprocess.CompletedProcess, n: int = 40) -> str:
    """The end of the build's output, and the failing cell's traceback if a lab failed."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr).splitlines()
    cell = next((i for i, line in enumerate(lines)
                 if "An error occurred while executing the following cell" in line), None)
    head = lines[cell:cell + 40] + ["..."] if cell is not None else []
    return "\n".join(head + lines[-n:])


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The book built from the repository's labs/."""
    assert (LABS / f"{LAB_00}.ipynb").is_file(), \
        f"book/_toc.yml lists labs/{LAB_00}, which does not exist"
    proc, out = build_book(tmp_path_factory.mktemp("book"), LABS)
    assert proc.returncode == 0, f"book/build.sh failed:\n{tail(proc)}"
    return out


def test_pages_exist(html):
    for page in ["index.html", "intro.html", "why_together_is_hard.html",
                 f"labs/{LAB_00}.html"]:
        assert (html / page).is_file(), f"{page} was not built"


def test_planning_tables_every_published_run_with_its_error(html):
    """The {model-validation} directive: a row per published run (its name, its layout) and
    each error with its sign, none shown as -0%."""
    import html as markup

    from gpuviz.plan import published

    page = (html / "planning.html").read_text(encoding="utf-8")
    table = published.validation_table()
    for r in table.itertuples():
        assert markup.escape(r.run, quote=False) in page and r.layout in page, r.run
    assert ">-0%<" not in page and ">+0%<" in page


def test_no_page_loads_from_a_cdn(html):
    pages = sorted(html.rglob("*.html"))
    assert pages
    bad = [f"{p.relative_to(html)}: {m.group(0)}" for p in pages
           for m in CDN.finditer(p.read_text(encoding="utf-8"))]
    assert not bad, "pages reference a CDN:\n" + "\n".join(bad)


def test_plotly_js_is_served_by_the_book(html):
    import plotly

    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    served = html / "_static" / "plotly.min.js"
    assert served.is_file()
    assert served.read_bytes() == shipped.read_bytes(), "plotly.js differs from the package's"
    lab = (html / "labs" / f"{LAB_00}.html").read_text(encoding="utf-8")
    assert '<script src="../_static/plotly.min.js' in lab
    # Prose pages without figures do not load 4.8 MB of plotly.js.
    assert "plotly.min.js" not in (html / "intro.html").read_text(encoding="utf-8")


def test_lab_page_holds_interactive_figures(html):
    lab = (html / "labs" / f"{LAB_00}.html").read_text(encoding="utf-8")
    divs = lab.count('class="plotly-graph-div"')
    assert divs >= 1, "the lab page holds no plotly figure"
    assert lab.count("Plotly.newPlot(") == divs


def test_math_renders_offline(html):
    chapter = (html / "why_together_is_hard.html").read_text(encoding="utf-8")
    assert 'src="_static/mathjax/tex-chtml.js"' in chapter
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def dump_dom(page: Path, profile: Path, console: list | None = None, width: int = 1280) -> str:
    """The DOM of ``page`` after its scripts ran, in headless Chromium with no network, in a
    window ``width`` CSS pixels wide; the page's console messages are appended to
    ``console`` when it is given."""
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (Debian/Ubuntu: apt-get install -y chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},900",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # any request to the network fails
           "--enable-logging=stderr", "--v=0",     # the page's console, on stderr
           "--virtual-time-budget=15000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if console is not None:
        console.extend(line for line in proc.stderr.splitlines() if ":CONSOLE" in line)
    return proc.stdout


@pytest.mark.parametrize("page", ["intro.html", f"labs/{LAB_00}.html"])
def test_pages_log_no_errors_and_have_an_icon(html, tmp_path, page):
    console: list[str] = []
    dump_dom(html / page, tmp_path / "profile", console)
    bad = [c for c in console if re.search(r"invalid|error|uncaught|failed", c, re.I)]
    assert not bad, "\n".join(bad)
    assert '<link rel="icon"' in (html / page).read_text(encoding="utf-8")


# Pages in frames of ``width`` CSS pixels, one on top of another (all in view: Chromium
# holds back frames out of view), in one window: one browser for many pages, and a phone's
# width though headless Chromium's window is at least 500 px wide. Each page posts its
# report here; this page shows every report so far.
_FRAME = """<html><body style="margin:0">
{frames}
<script>const got = {{}};
window.addEventListener("message", e => {{
  const m = JSON.parse(e.data);
  got[m.key] = m.report;
  let out = document.getElementById("gpuviz-report");
  if (!out) {{
    out = document.createElement("pre");
    out.id = "gpuviz-report";
    document.body.appendChild(out);
  }}
  out.textContent = JSON.stringify(got);
}});</script></body></html>"""
_ONE_FRAME = ('<iframe src="{src}" style="position:absolute;top:0;left:0;width:{width}px;'
              'height:900px;border:0"></iframe>')

# Runs ``body`` (JavaScript with ``await``; it calls ``report(object)``) 2 s after the page
# has loaded and its figures are drawn; an exception is reported as {"error": ...}.
_PROBE = """<script>
window.addEventListener("load", () => setTimeout(async () => {{
  const report = obj => {{
    if (window.parent !== window) {{
      window.parent.postMessage(JSON.stringify({{key: "{key}", report: obj}}), "*");
      return;
    }}
    const out = document.createElement("pre");
    out.id = "gpuviz-report";
    out.textContent = JSON.stringify(obj);
    document.body.appendChild(out);
  }};
  try {{
{body}
  }} catch (e) {{ report({{error: String(e)}}); }}
}}, 2000));
</script>"""


def run_in_pages(pages: list[Path], body: str, profile: Path, width: int = 1280,
                 console: list | None = None) -> list[dict]:
    """What the JavaScript ``body`` reports from each of ``pages`` (copies of them, with the
    script added), each in a frame ``width`` CSS pixels wide, in one headless Chromium with
    no network. A single page at 500 px or wider gets the window itself."""
    import json

    root = Path(os.path.commonpath([p.parent for p in pages]))
    probes = [p.with_name(f".probe-{p.name}") for p in pages]
    frame = root / ".frame.html"
    keys = [str(p.relative_to(root)) for p in pages]
    for page, probe, key in zip(pages, probes, keys, strict=True):
        probe.write_text(page.read_text(encoding="utf-8").replace(
            "</body>", _PROBE.format(body=body, key=key) + "</body>"), encoding="utf-8")
    alone = len(pages) == 1 and width >= 500
    if not alone:
        frame.write_text(_FRAME.format(frames="\n".join(
            _ONE_FRAME.format(src=probe.relative_to(root).as_posix(), width=width) for probe in probes)),
            encoding="utf-8")
    try:
        dom = dump_dom(probes[0] if alone else frame, profile, console, width=max(width, 500))
    finally:
        for probe in probes:
            probe.unlink()
        frame.unlink(missing_ok=True)
    # the theme may add attributes (tabindex) to a <pre>
    m = re.search(r'<pre id="gpuviz-report"[^>]*>(.*?)</pre>', dom, re.S)
    got = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                     .replace("&amp;", "&")) if m else {}
    if alone:
        got = {keys[0]: got} if m else {}
    missing = [k for k in keys if k not in got]
    assert not missing, f"the probe did not report from {', '.join(missing)}"
    return [got[k] for k in keys]


def run_in_page(page: Path, body: str, profile: Path, width: int = 1280,
                console: list | None = None) -> dict:
    """:func:`run_in_pages` for one page."""
    return run_in_pages([page], body, profile, width, console)[0]


# Every figure, table, image and printed output that sticks out of the text column, unless it
# sits in a box that scrolls sideways on purpose (the book's CSS gives wide tables and printed
# output one); and whether the page itself scrolls sideways.
_MEASURE = """
  const col = document.querySelector("article.bd-article") || document.querySelector("main");
  const c = col.getBoundingClientRect(), bad = [];
  const scroller = el => {
    for (let a = el.parentElement; a && a !== col; a = a.parentElement) {
      const x = getComputedStyle(a).overflowX;
      if (x === "auto" || x === "scroll") return a;
    }
    return null;
  };
  col.querySelectorAll(".plotly-graph-div, .plotly-graph-div .main-svg, table, pre, img, .cell_output")
    .forEach(el => {
      const s = scroller(el), r = (s || el).getBoundingClientRect();
      if (r.width > 0 && (r.right > c.right + 1 || r.left < c.left - 1))
        bad.push(`${el.tagName.toLowerCase()}.${String(el.className.baseVal ?? el.className)
          .split(" ")[0]} ${Math.round(r.width)} px wide at ${Math.round(r.left)}..${Math.round(r.right)}`);
    });
  report({column: Math.round(c.width), bad, page: document.documentElement.scrollWidth,
          window: window.innerWidth});"""

_READ_PAGES = [*(f"{p.stem}.html" for p in sorted((ROOT / "book").glob("*.md")) if p.stem != "README"),
               *(f"labs/{p.stem}.html" for p in sorted(LABS.glob("0*.ipynb")))]


@pytest.mark.parametrize("width", [1280, 390])
def test_nothing_is_wider_than_the_text_column(html, tmp_path, width):
    """At a laptop's width and a phone's, no page scrolls sideways and no figure, table or
    output sticks out of the text column (wide tables and printed output scroll inside it)."""
    console: list[str] = []
    reports = run_in_pages([html / p for p in _READ_PAGES], _MEASURE, tmp_path / "profile",
                           width, console)
    problems = []
    for page, got in zip(_READ_PAGES, reports, strict=True):
        assert "error" not in got, (page, got)
        if got["page"] > got["window"] + 1:
            problems.append(f"{page}: the page is {got['page']} px wide in a {got['window']} px window")
        problems += [f"{page}: {b} (column {got['column']} px)" for b in got["bad"]]
    problems += [f"console: {c}" for c in console if re.search(r"invalid|error|uncaught|failed", c, re.I)]
    assert not problems, "\n".join(problems)


# The hardware ladder's two panels: side by side, or stacked on a phone (gpuviz-narrow.js).
_PANELS = """
  const gd = [...document.querySelectorAll(".plotly-graph-div")]
    .find(d => d.layout && String(d.layout.title && d.layout.title.text).includes("hardware ladder"));
  report({x: gd.layout.xaxis.domain, x2: gd.layout.xaxis2.domain, y: gd.layout.yaxis.domain,
          y2: gd.layout.yaxis2.domain, height: gd.clientHeight});"""


def test_panels_side_by_side_are_stacked_on_a_phone(html, tmp_path):
    page = html / "labs" / "02_sharing.html"
    wide = run_in_page(page, _PANELS, tmp_path / "profile", 1280)
    phone = run_in_page(page, _PANELS, tmp_path / "profile", 390)
    assert wide["x"][1] <= wide["x2"][0] and wide["y"] == wide["y2"]        # side by side
    assert phone["x2"] == [0, 1] and phone["y2"][1] < phone["y"][0]         # one above the other
    assert phone["height"] > wide["height"]                                  # and the figure grew


# What the lab page's kernel-free planner does when its slider's first stop and its model
# menu's last entry are clicked (plotly.js runs the same call).
_DRIVE_PLANNER = """
  const gd = [...document.querySelectorAll(".plotly-graph-div")]
    .find(d => d.layout && d.layout.sliders && d.layout.sliders.length);
  const seen = t => t.filter(d => d.visible === true).map(d => d.y.length);
  const out = {found: !!gd};
  if (gd) {
    out.before = seen(gd.data);
    const step = gd.layout.sliders[0].steps[0], pick = gd.layout.updatemenus[0].buttons.at(-1);
    await Plotly[step.method](gd, ...step.args);
    out.slider = seen(gd.data);
    await Plotly[pick.method](gd, ...pick.args);
    out.menu = seen(gd.data);
    out.label = pick.label;
    out.firstY = gd.data.filter(d => d.visible === true)[0].y;
  }
  report(out);"""


def test_the_precomputed_planner_answers_its_menu_and_slider_in_a_browser(html, tmp_path):
    """The lab page's kernel-free planner: its slider and its model menu, run by plotly.js
    as a click would, show another GPU count's layouts and another model's bars."""
    got = run_in_page(html / "labs" / "05_plan_a_training_run.html", _DRIVE_PLANNER,
                      tmp_path / "profile")
    assert got["found"] and "error" not in got, got
    per = len(got["before"])                       # one model's traces are shown at a time
    assert per > 1 and len(got["slider"]) == per and len(got["menu"]) == per
    assert got["slider"] != got["before"]          # 8 GPUs: fewer (tp, pp) rows than 128
    assert got["label"] == "qwen3-30b-a3b" and got["firstY"][0].startswith("tp=")


def test_figures_draw_in_a_browser_offline(html, tmp_path):
    page = html / "labs" / f"{LAB_00}.html"
    divs = page.read_text(encoding="utf-8").count('class="plotly-graph-div"')
    dom = dump_dom(page, tmp_path / "profile")
    # plotly.js marks each figure it drew and adds its SVG layers.
    assert dom.count("plotly-graph-div js-plotly-plot") == divs, "a figure was not drawn"
    assert dom.count('class="main-svg"') >= divs


def test_math_draws_in_a_browser_offline(html, tmp_path):
    dom = dump_dom(html / "why_together_is_hard.html", tmp_path / "profile")
    assert "<mjx-container" in dom, "MathJax did not typeset the chapter"


def test_figure_the_book_cannot_draw_fails_the_build(tmp_path):
    """A figure drawn with plotly's own default renderer (JSON only) stops the build."""
    labs = tmp_path / "labs"
    labs.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A lab that forgot the renderer"),
        nbformat.v4.new_code_cell("import plotly.graph_objects as go\n"
                                  "go.Figure(go.Bar(x=['a', 'b'], y=[1, 2]))"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, labs / f"{LAB_00}.ipynb")
    proc, _ = build_book(tmp_path, labs)
    assert proc.returncode != 0, "the build passed with a figure it cannot draw"
    assert "no text/html output" in proc.stdout + proc.stderr, tail(proc)


def test_the_instructors_guide_has_times_measured_by_this_build(html):
    page = (html / "teaching" / "guide.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", page)
    measured = re.findall(r"Measured when this page was built: the notebook ran in ([^.]+?) on the machine", text)
    assert len(measured) == 6, measured                      # one per lab, none missing
    assert "did not run the notebook" not in text
    assert re.search(r"All 6 together: \d+ min \d+ s", text)
    assert "min(M / " in text and "copies at once" in text   # the sizing rule and its table


def test_every_lab_page_offers_its_notebook_with_outputs_and_its_solutions(html):
    for nb_path in sorted(LABS.glob("*.ipynb")):
        name = nb_path.stem
        page = (html / "labs" / f"{name}.html").read_text(encoding="utf-8")
        assert "Run this lab" in page and "mybinder.org" not in page, name   # local build: no repository
        for link in re.findall(r'href="\.\./((?:notebooks|solutions)/[^"]+)" download', page):
            assert (html / link).is_file(), f"{name}: {link} is linked but not written"
        assert f'href="../solutions/{name}.py"' in page, name
        done = nbformat.read(html / "notebooks" / f"{name}.ipynb", as_version=4)
        setup = next(c for c in done.cells if c.cell_type == "code")
        assert "This lab's jobs run on 4 ranks" in "".join(o.get("text", "") for o in setup.outputs), \
            f"{name}: the download has no outputs of this build"
        source = nbformat.read(nb_path, as_version=4)
        assert [c.source for c in done.cells] == [c.source for c in source.cells], \
            f"{name}: the download's cells differ from labs/ (its chapter links must point into the repository)"


def test_every_claim_the_labs_made_holds_in_this_build(html):
    """Each lab's sentences about its run are computed from the run (gpuviz.classroom.claims);
    the build records them all, and none may contradict its own numbers."""
    from gpuviz.classroom.audit import audit

    report = audit(html.parent / "claims.jsonl")
    assert report.ok, report.text()


def _stand_in_labs(folder: Path) -> Path:
    """One-cell notebooks under the labs' names: a whole book in seconds."""
    folder.mkdir()
    for name in re.findall(r"file: labs/(\S+)", (ROOT / "book" / "_toc.yml").read_text()):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"),
                                             nbformat.v4.new_code_cell("print(1)")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


def test_a_published_build_links_its_repository_on_every_page(tmp_path, monkeypatch):
    """What .github/workflows/book.yml does: GPUVIZ_REPOSITORY_URL, then make book's script."""
    url = "https://github.com/example-owner/gpuviz"
    monkeypatch.setenv("GPUVIZ_REPOSITORY_URL", url)
    proc, out = build_book(tmp_path, _stand_in_labs(tmp_path / "labs"))
    assert proc.returncode == 0, tail(proc)
    pages = sorted(p for p in out.rglob("*.html") if "_static" not in p.parts)
    assert len(pages) >= 13
    for page in pages:
        if page.name not in ("search.html", "genindex.html", "index.html"):   # index: a redirect
            assert f'href="{url}"' in page.read_text(encoding="utf-8"), page.name
    for name in re.findall(r"file: labs/(\S+)", (ROOT / "book" / "_toc.yml").read_text()):
        page = (out / "labs" / f"{name}.html").read_text(encoding="utf-8")
        binder = f"https://mybinder.org/v2/gh/example-owner/gpuviz/HEAD?urlpath=lab/tree/labs/{name}.ipynb"
        assert f'href="{binder}"' in page, name
        assert "book/labs" not in page.split('class="bd-article"')[-1], "a link into the build's own copy"


def test_the_publishing_workflow_builds_with_make_book():
    import yaml

    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    steps = flow["jobs"]["build"]["steps"]
    build = next(s for s in steps if s.get("name") == "make book")
    assert build["run"] == "make book" and "github.repository" in build["env"]["GPUVIZ_REPOSITORY_URL"]
    assert any("upload-pages-artifact" in s.get("uses", "") for s in steps)
    assert any("gh release upload" in s.get("run", "") for s in steps)
    assert "deploy-pages" in flow["jobs"]["deploy"]["steps"][0]["uses"]
