"""A class's progress: exercises by completion.

>>> from gpuviz.classroom.grade import grades, completion
>>> fig = exercise_completion(completion(grades(["ada/", "bo/"])))   # doctest: +SKIP
"""

from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["exercise_completion"]


def exercise_completion(done, *, title: str | None = None) -> go.Figure:
    """Per exercise, the learners who solved it, who tried and not yet solved, and who have
    not tried: stacked bars, in the labs' order (``done``: :func:`gpuviz.classroom.grade.completion`)."""
    need = {"lab", "exercise", "solved", "tried", "learners"}
    if not need <= set(done.columns):
        raise ValueError(f"done lacks {sorted(need - set(done.columns))}: give completion(grades(...))")
    y = [f"Lab {lab} · {ex}" for lab, ex in zip(done["lab"], done["exercise"], strict=True)]
    parts = (("solved", done["solved"], "#54A24B"), ("tried, not yet", done["tried"] - done["solved"], "#F58518"),
             ("not tried", done["learners"] - done["tried"], "#BAB0AC"))
    fig = go.Figure()
    for name, v, colour in parts:
        fig.add_bar(y=y, x=v, orientation="h", name=name, marker_color=colour,
                    hovertemplate="%{y}<br>" + name + ": %{x} learners<extra></extra>")
    n = int(done["learners"].max()) if len(done) else 0
    fig.update_layout(barmode="stack", template="plotly_white", height=max(360, 120 + 24 * len(y)),
                      title=dict(text=title or f"Exercises by completion, {n} learners",
                                 subtitle=dict(text="from each learner's gpuviz-progress.jsonl")),
                      legend=dict(orientation="h", y=-0.12), margin=dict(t=90, l=220))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="learners", dtick=1 if n <= 20 else None)
    return fig
