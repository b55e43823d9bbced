# gpuviz: every command sets itself up first (a .venv with pinned packages).
#   make lab    set up, then open JupyterLab on Lab 00
#   make book   set up, execute every lab and build the HTML book into book/_build/html
#   make audit  build the book, then list every claim the labs made and whether it holds
#   make test   set up, then lint, unit tests, and a book build that runs every lab
#   make wheelhouse / make setup-offline   every wheel in a folder; install from it alone
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.gpuviz-setup
export PATH := $(abspath $(VENV))/bin:$(PATH)
export OMP_NUM_THREADS ?= 1

.PHONY: setup lab book audit test lint unit labs browser lock clean wheelhouse setup-offline
setup: $(STAMP)

# torch 2.13.0: the CUDA build from PyPI where nvidia-smi sees a GPU; otherwise the CPU
# build (a local wheel if pip's find-links has one, else PyTorch's CPU index, else PyPI's,
# which on macOS is the CPU build).
$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(PY) || python3 -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  $(PIP) install torch==2.13.0; \
	else \
	  $(PIP) install "torch==2.13.0+cpu" || \
	  $(PIP) install "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu || \
	  $(PIP) install torch==2.13.0; \
	fi
	$(PIP) install -c requirements/lock.txt -e ".[lab,book,dev]"
	$(VENV)/bin/gpuviz build-native || echo "make: runs will use gpuviz's Python routes (above: why)"
	touch $@

# As root (containers, some hubs) JupyterLab asks for --allow-root.
lab: setup
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) labs/00_meet_your_cluster.ipynb

book: setup
	VENV=$(VENV) bash book/build.sh

# Every claim the labs make, with the values it was computed from: build the book, then list.
audit: book
	$(VENV)/bin/gpuviz audit book/_build/claims.jsonl

lint: setup
	$(VENV)/bin/ruff check gpuviz tests benchmarks book

unit: setup
	$(PY) -m pytest tests gpuviz --doctest-modules -q --durations=15

labs: setup
	$(PY) -m pytest --nbval-lax labs -q

# Every lab runs once, in the book's build (tests/test_book.py); `make labs` runs them alone.
test: lint browser unit

# A room with no internet: every wheel the labs need (torch's CPU build included) in one
# folder, then a seat installs from that folder alone. tests/test_wheelhouse.py does both.
WHEELHOUSE ?= wheelhouse
wheelhouse: setup
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PIP) download -q -d $(WHEELHOUSE) "torch==2.13.0+cpu" || \
	  $(PIP) download -q -d $(WHEELHOUSE) "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
	echo "torch==2.13.0+cpu" > $(WHEELHOUSE)/torch-cpu.txt
	$(PIP) download -q -d $(WHEELHOUSE) --find-links $(WHEELHOUSE) -c requirements/lock.txt \
	  -c $(WHEELHOUSE)/torch-cpu.txt ".[lab]"
	$(PIP) wheel -q --no-deps -w $(WHEELHOUSE) .
	@echo "make: $$(ls $(WHEELHOUSE) | wc -l) files in $(WHEELHOUSE)/ ($$(du -sh $(WHEELHOUSE) | cut -f1)): copy it and this folder to each seat, then: make setup-offline"

setup-offline:
	@test -d $(WHEELHOUSE) || { echo "make: no $(WHEELHOUSE)/ here: make it with 'make wheelhouse' where there is a network"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --no-index --find-links $(WHEELHOUSE) "torch==2.13.0+cpu"
	$(PIP) install -q --no-index --find-links $(WHEELHOUSE) -c requirements/lock.txt \
	  -c $(WHEELHOUSE)/torch-cpu.txt "gpuviz[lab]"
	$(VENV)/bin/gpuviz build-native || echo "make: runs will use gpuviz's Python routes (above: why)"
	touch $(STAMP)

# The book's browser test draws every figure in headless Chromium. As root with apt (CI,
# containers) it is installed here; elsewhere that test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	echo "make: no Chromium (apt-get install chromium): the book's browser test will be skipped"

# Refresh the pins after changing pyproject.toml (review the diff before committing).
lock: setup
	{ sed -n '1,2p' requirements/lock.txt; $(PIP) freeze --exclude-editable | grep -v -e '^torch==' -e '^gpuviz'; } > requirements/lock.new
	mv requirements/lock.new requirements/lock.txt

clean:
	rm -rf book/_build book/labs runs labs/runs .pytest_cache
