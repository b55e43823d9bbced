"""The fixed span categories and their colours, the same in every figure.

>>> from gpuviz.run.categories import CATEGORIES, COLORS
>>> CATEGORIES[0], COLORS["comm"]
('compute', '#F58518')
"""

#: What a rank can be doing. ``idle`` is waiting for other ranks.
CATEGORIES = ("compute", "comm", "optimizer", "data", "idle", "io")

#: One colour per category (Tableau 10, colour-blind friendly).
COLORS = {
    "compute": "#4C78A8",
    "comm": "#F58518",
    "optimizer": "#54A24B",
    "data": "#B279A2",
    "idle": "#BAB0AC",
    "io": "#9D755D",
}


def check_category(cat: str) -> str:
    """Return ``cat`` if it is a known category, else raise a clear ValueError."""
    if cat not in CATEGORIES:
        raise ValueError(f"cat={cat!r} is not a span category; use one of {', '.join(CATEGORIES)}")
    return cat
