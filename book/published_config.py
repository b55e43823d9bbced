"""The book's configuration for a published build: ``_config.yml`` with the repository's
address, shown on every page (the repository button, issues and the source of each page).

The address has one source, the place the book is published from: GitHub Actions gives it
as ``${{ github.server_url }}/${{ github.repository }}`` (``.github/workflows/book.yml``),
and ``book/build.sh`` calls this when ``$GPUVIZ_REPOSITORY_URL`` is set. A local build
names no repository.

    python book/published_config.py book/_config.yml https://github.com/you/gpuviz OUT.yml

>>> text = published("title: t\\nhtml:\\n  use_repository_button: false\\n", "https://example.org/x/y")
>>> "url: https://example.org/x/y" in text and "use_repository_button: true" in text
True
"""

from __future__ import annotations

import re
import sys

import yaml


def published(config_text: str, url: str) -> str:
    """``config_text`` (a jupyter-book ``_config.yml``) with the repository at ``url``."""
    if not re.fullmatch(r"https://[^\s/]+/[^\s]+", url or ""):
        raise ValueError(f"url={url!r}: give the repository's https address, "
                         "e.g. https://github.com/OWNER/gpuviz")
    config = yaml.safe_load(config_text)
    config["repository"] = {"url": url, "branch": "main", "path_to_book": "book"}
    html = config.setdefault("html", {})
    html.update(use_repository_button=True, use_issues_button=True)
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python book/published_config.py _config.yml URL OUT.yml")
    src, url, out = sys.argv[1:]
    with open(src, encoding="utf-8") as f:
        text = published(f.read(), url)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
