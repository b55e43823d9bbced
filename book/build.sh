#!/usr/bin/env bash
# Build the gpuviz book: execute every lab and write the HTML to book/_build/html.
#
#   bash book/build.sh                 what `make book` runs (VENV=.venv)
#   VENV=/path/to/venv bash book/build.sh
#   LABS=/path/to/notebooks bash book/build.sh    build other notebooks (tests use it)
#
# Steps: copy labs/ to book/labs/ (git-ignored), give the build a kernel named python3
# that runs this venv's python, run jupyter-book with every warning an error, then check
# that no page loads anything from the network. Needs no network at any step.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BOOK="$ROOT/book"
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
LABS=${LABS:-$ROOT/labs}
PY="$VENV/bin/python"

die() { echo "book/build.sh: $*" >&2; exit 1; }
[ -x "$PY" ] || die "no python at $PY: run 'make setup', or set VENV to a virtualenv"
"$PY" -c "import importlib, jupyter_book, myst_nb, plotly, ipykernel
importlib.import_module('sphinx-mathjax-offline')" 2>/dev/null \
  || die "$VENV lacks the book's packages: pip install -e '.[book]' (jupyter-book, sphinx-mathjax-offline)"
[ -d "$LABS" ] || die "no labs directory at $LABS"

start=$(date +%s)

# 1. The labs, as the toc expects them: book/labs/*.ipynb (plus any files they read).
rm -rf "$BOOK/labs"
"$PY" - "$LABS" "$BOOK/labs" <<'EOF'
import shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
    "runs", ".ipynb_checkpoints", "__pycache__", "*.pyc"))
# A lab links a chapter as ../book/<chapter>.md, which JupyterLab opens from labs/; in the
# book the lab sits in book/labs/, so the same chapter is ../<chapter>.md.
for nb in dst.glob("*.ipynb"):
    text = nb.read_text(encoding="utf-8")
    nb.write_text(text.replace("](../book/", "](../"), encoding="utf-8")
print(f"copied {len(list(dst.glob('*.ipynb')))} notebooks from {src} to {dst}")
EOF

# 2. The kernel. JUPYTER_PATH comes first in Jupyter's search, so this spec wins over a
#    python3 kernel installed for the user or the system, whatever python that one runs.
KERNELS=$(mktemp -d)
trap 'rm -rf "$KERNELS"' EXIT
mkdir -p "$KERNELS/kernels/python3"
"$PY" - "$KERNELS/kernels/python3/kernel.json" "$PY" <<'EOF'
import json, sys
json.dump({"argv": [sys.argv[2], "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                    "-f", "{connection_file}"],
           "display_name": "Python 3 (gpuviz book)", "language": "python"},
          open(sys.argv[1], "w"), indent=1)
EOF
export JUPYTER_PATH="$KERNELS${JUPYTER_PATH:+:$JUPYTER_PATH}"
export PATH="$VENV/bin:$PATH"           # torchrun and friends from the same venv
export PYTHONNOUSERSITE=1               # no packages from ~/.local in the kernel
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# No one watches the build: no progress bars (widgets drawn from the launcher's thread are
# dropped from the pages anyway, and an execution stalled after one in a long cell).
export GPUVIZ_NO_PROGRESS_BAR=1
# Every claim a lab makes about its run, for the audit (gpuviz audit; tests/test_book.py).
mkdir -p "$BOOK/_build"
export GPUVIZ_CLAIMS_FILE="$BOOK/_build/claims.jsonl"
: > "$GPUVIZ_CLAIMS_FILE"

# 3. Build. --all: a fresh environment, every page written again from this run.
#    --warningiserror --keep-going: report every warning, then fail if there was one.
#    Published (GPUVIZ_REPOSITORY_URL set, as .github/workflows/book.yml does): every page
#    also links the repository it was built from (book/published_config.py).
CONFIG=()
if [ -n "${GPUVIZ_REPOSITORY_URL:-}" ]; then
  "$PY" "$BOOK/published_config.py" "$BOOK/_config.yml" "$GPUVIZ_REPOSITORY_URL" "$BOOK/_config.published.yml"
  CONFIG=(--config "$BOOK/_config.published.yml")
fi
"$VENV/bin/jupyter-book" build "$BOOK" --all --warningiserror --keep-going ${CONFIG[@]+"${CONFIG[@]}"}

# 4. Offline check: no page may load a script, style, font, image or frame from the network.
"$PY" - "$BOOK/_build/html" <<'EOF'
import re, sys
from pathlib import Path
html = Path(sys.argv[1])
remote = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//",
    re.I)
bad = [f"{p.relative_to(html)}: {m.group(0)[:120]}"
       for p in sorted(html.rglob("*.html")) for m in remote.finditer(p.read_text("utf-8"))]
if bad:
    sys.exit("book/build.sh: pages load from the network:\n  " + "\n  ".join(bad))
if not (html / "_static" / "plotly.min.js").is_file():
    sys.exit("book/build.sh: _static/plotly.min.js is missing")
EOF

echo "book/build.sh: built $BOOK/_build/html/index.html in $(( $(date +%s) - start )) s"
