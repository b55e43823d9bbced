"""Interactive apps for notebooks, built on :mod:`gpuviz.plan.prediction` and :mod:`gpuviz.plot`.

:func:`planner` plans a training run: pick a model, a GPU, the links and a layout with
sliders and menus; the modelled step-time and memory breakdown (a plotly FigureWidget,
updated in place) and the headline numbers follow at once; "find best layout" searches
every layout (:func:`gpuviz.plan.search.search`) and shows the winner, why it wins and a
heatmap of throughput over (tp, pp). Every number is modelled, and the app says so.

>>> app = planner()
>>> app.controls["tp"].value = 4
>>> "step" in app.numbers.value
True
"""

from __future__ import annotations

import time

import ipywidgets as w
import plotly.graph_objects as go

from gpuviz.plan.config import Config
from gpuviz.plan.prediction import predict
from gpuviz.plan.search import search
from gpuviz.plan.terms import TIME_TERMS
from gpuviz.plan.transformer import PRESETS
from gpuviz.plot.plan import breakdown_subtitle, layout_heatmap, model_breakdown
from gpuviz.sharing import accelerators

_INTRA = [k for k, v in accelerators.INTERCONNECTS.items() if v["where"] == "inside a server"]
_INTER = [k for k, v in accelerators.INTERCONNECTS.items() if v["where"] == "between servers"]
_PRESS = "<i>Press the button to search every layout (modelled).</i>"


def _figure_widget(fig: go.Figure):
    """A plotly FigureWidget (updated in place in the browser; plotly 6 needs the anywidget
    package for it), or the figure itself, shown in an Output widget, where it is missing."""
    try:
        return go.FigureWidget(fig)
    except ImportError:
        return fig


def _view(fig):
    return fig if isinstance(fig, go.FigureWidget) else w.Output()


def _refresh(view, fig) -> None:
    """Redraw a plain figure in its Output widget (a FigureWidget redraws itself)."""
    if isinstance(view, w.Output):
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            with view:
                view.clear_output(wait=True)
                display(fig)


class Planner:
    """The planner's widgets: ``controls`` (name -> widget), ``figure`` (the breakdown: a
    FigureWidget, or a Figure in the Output ``figure_view`` without anywidget), ``numbers``
    and ``result`` (HTML), ``heatmap`` (likewise, in ``heatmap_view``),
    ``ui`` (the whole app), ``last_update_s`` (how long the last update took)."""

    def __init__(self, model: str = "llama3-70b", gpu: str = "H100 SXM", gpus_log2: int = 6,
                 global_batch: int = 512):
        ctl = {
            "model": w.Dropdown(options=[m for m in PRESETS if m != "gpuviz-gpt"], value=model,
                                description="model"),
            "gpu": w.Dropdown(options=list(accelerators.ACCELERATORS), value=gpu, description="GPU"),
            "intra": w.Dropdown(options=["(the GPU's own)", *_INTRA], description="in a server"),
            "inter": w.Dropdown(options=_INTER, value="ib-ndr", description="between"),
            "gpus": w.SelectionSlider(options=[2**k for k in range(15)], value=2**gpus_log2,
                                      description="GPUs"),
            "tp": w.SelectionSlider(options=[1, 2, 4, 8], value=8, description="tp"),
            "pp": w.SelectionSlider(options=[2**k for k in range(8)], value=1, description="pp"),
            "cp": w.SelectionSlider(options=[2**k for k in range(5)], value=1, description="cp"),
            "ep": w.SelectionSlider(options=[1], value=1, description="ep (experts)"),
            "ep_overlap": w.Checkbox(value=False, description="all-to-alls behind compute"),
            "virtual_stages": w.ToggleButtons(options=[1, 2, 4], value=1, description="virtual stages"),
            "micro_batch": w.SelectionSlider(options=[1, 2, 4, 8, 16], value=1, description="micro-batch"),
            "global_batch": w.SelectionSlider(options=[2**k for k in range(5, 15)], value=global_batch,
                                              description="global batch"),
            "zero": w.ToggleButtons(options=[0, 1, 2, 3], value=1, description="ZeRO"),
            "recompute": w.ToggleButtons(options=["none", "selective", "full"], value="selective",
                                         description="recompute"),
            "precision": w.ToggleButtons(options=["bf16", "fp8"], value="bf16",
                                         description="matmuls"),
        }
        self.controls = ctl
        self._limit_layout()
        # fixed widths: the controls do not move as the numbers' text changes
        self.numbers = w.HTML(layout=w.Layout(width="560px", min_height="4.5em"))
        self.result = w.HTML(_PRESS)
        self._searched: tuple | None = None   # what the shown best layout was searched for
        self.button = w.Button(description="find best layout", button_style="primary")
        cfg = self._config()
        self.figure = _figure_widget(model_breakdown(predict(cfg if isinstance(cfg, Config)
                                                             else self._fallback())))
        self.heatmap = _figure_widget(go.Figure())
        self.figure_view, self.heatmap_view = _view(self.figure), _view(self.heatmap)
        self.last_update_s = float("nan")
        self._busy = False
        for c in ctl.values():
            c.observe(self._changed, names="value")
        self.button.on_click(lambda _b: self.find_best())
        left = w.VBox(list(ctl.values()) + [self.button], layout=w.Layout(width="380px", flex="0 0 auto"))
        self.ui = w.VBox([w.HBox([left, w.VBox([self.numbers, self.figure_view])]), self.result,
                          self.heatmap_view])
        self.update()

    def _changed(self, change) -> None:
        if self._busy:   # options being narrowed: one update at the end
            return
        if change["owner"] in (self.controls[k] for k in ("model", "gpus", "tp", "pp", "cp")):
            self._limit_layout()
        self.update()

    def _limit_layout(self) -> None:
        """Offer only the tp, pp, cp and ep that exist for the chosen GPUs: tp within a server
        of 8 and at most the GPUs, tp x pp and then tp x pp x cp at most the GPUs, ep (a
        mixture of experts only) dividing the experts and the GPUs of a pipeline stage (a
        value that no longer exists becomes the largest that does); the all-to-all overlap
        only for a mixture of experts."""
        c, n = self.controls, self.controls["gpus"].value
        experts = PRESETS[c["model"].value].experts
        self._busy = True
        try:
            for name in ("tp", "pp", "cp", "ep"):   # each one's choices follow those just chosen
                allowed = ([t for t in (1, 2, 4, 8) if t <= n] if name == "tp" else
                           [2**k for k in range(8) if 2**k * c["tp"].value <= n] if name == "pp" else
                           [2**k for k in range(5) if 2**k * c["tp"].value * c["pp"].value <= n]
                           if name == "cp" else
                           [e for e in (2**k for k in range(experts.bit_length()))
                            if experts % e == 0 and (n // c["pp"].value) % e == 0] or [1])
                ctl = c[name]
                if list(ctl.options) != allowed:
                    value = ctl.value if ctl.value in allowed else allowed[-1]
                    ctl.options = allowed
                    ctl.value = value
        finally:
            self._busy = False
        c["ep_overlap"].disabled = not experts   # a dense model has no all-to-alls to hide

    def _set(self, values: dict) -> None:
        """Set controls without an update for each (the caller updates once)."""
        self._busy = True
        try:
            for k, v in values.items():
                if v in self.controls[k].options:
                    self.controls[k].value = v
        finally:
            self._busy = False

    def _search_key(self) -> tuple:
        c = self.controls
        return tuple(c[k].value for k in ("model", "gpu", "gpus", "global_batch", "intra", "inter",
                                          "precision", "ep_overlap"))

    def _fallback(self) -> Config:
        c = self.controls
        n = c["gpus"].value
        return Config(c["model"].value, gpus=n, dp=n, global_batch=max(n, c["global_batch"].value))

    def _config(self) -> Config | str:
        """The Config the controls describe, or why they describe none (a str)."""
        c = self.controls
        tp, pp, cp = c["tp"].value, c["pp"].value, c["cp"].value
        n = c["gpus"].value
        if n % (tp * pp * cp):
            return f"tp x pp x cp = {tp * pp * cp} does not divide {n} GPUs"
        try:
            return Config(c["model"].value, gpus=n, dp=n // (tp * pp * cp), tp=tp, pp=pp, cp=cp,
                          ep=c["ep"].value, ep_overlap=c["ep_overlap"].value,
                          precision=c["precision"].value,
                          global_batch=c["global_batch"].value, micro_batch=c["micro_batch"].value,
                          virtual_stages=c["virtual_stages"].value,
                          zero=c["zero"].value, recompute=c["recompute"].value, gpu=c["gpu"].value,
                          intra_link=None if c["intra"].value.startswith("(") else c["intra"].value,
                          inter_link=c["inter"].value)
        except ValueError as e:
            return str(e)

    def update(self) -> None:
        """Predict the controls' layout; update the numbers and the figure in place."""
        t0 = time.perf_counter()
        cfg = self._config()
        if self._searched is not None and self._searched != self._search_key():
            self.result.value = _PRESS + " (the best layout shown before was for other choices)"
            self._searched = None
            with self.heatmap.batch_update():
                self.heatmap.data = []
            _refresh(self.heatmap_view, self.heatmap)
        if isinstance(cfg, str):
            self.numbers.value = f"<b style='color:#E45756'>No such layout:</b> {cfg}"
            with self.figure.batch_update():   # no bars of an earlier layout stay standing
                for trace in self.figure.data:
                    trace.y = [0]
                self.figure.layout.title.subtitle.text = f"<b>no such layout</b>: {cfg}"
            _refresh(self.figure_view, self.figure)
            self.last_update_s = time.perf_counter() - t0
            return
        p = predict(cfg)
        s = p.summary()
        fit = "fits" if p.fits else "<b style='color:#E45756'>does NOT fit</b>"
        energy = s["energy_kWh_per_step"]
        self.numbers.value = (
            f"<b>Modelled</b> (not measured): step {s['step_s']:.4g} s &middot; "
            f"{s['tokens_per_s']:,.0f} tokens/s &middot; MFU {s['mfu']:.1%} &middot; "
            f"{s['tflops_per_gpu']:.0f} TFLOP/s per GPU<br>memory {s['memory_GiB']:.1f} GiB per GPU "
            f"({fit}, {s['margin_GiB']:+.1f} GiB to spare after {cfg.reserved_gib:g} GiB reserved) "
            f"&middot; energy {energy:.3g} kWh per step at max board power &middot; "
            f"mostly {s['dominant']}")
        tab, mem = p.table(), p.memory_table()
        with self.figure.batch_update():
            for trace, (_, r) in zip(self.figure.data[:len(TIME_TERMS)], tab.iterrows(), strict=True):
                trace.y = [r["seconds"]]
                trace.hovertemplate = (f"<b>{r['what']}</b><br>{r['seconds']:.6g} s "
                                       f"({r['share']:.1%} of the step)<br>modelled<extra></extra>")
            for trace, (_, r) in zip(self.figure.data[len(TIME_TERMS):], mem.iterrows(), strict=True):
                trace.y = [r["GiB"]]
                trace.hovertemplate = f"<b>{r['kind']}</b><br>{r['GiB']:.4g} GiB<br>{r['label']}<extra></extra>"
            cap = float(mem["capacity_GiB"].iloc[0])
            if self.figure.layout.shapes:
                self.figure.layout.shapes[0].update(y0=cap, y1=cap)
                self.figure.layout.annotations[-1].update(y=cap, text=f"capacity {cap:.1f} GiB")
            self.figure.layout.title.subtitle.text = breakdown_subtitle(p)
        _refresh(self.figure_view, self.figure)
        self.last_update_s = time.perf_counter() - t0

    def find_best(self) -> None:
        """Search every layout for the controls' model, GPUs and batch; show the result."""
        c = self.controls
        try:
            table = search(c["model"].value, gpus=c["gpus"].value, global_batch=c["global_batch"].value,
                           gpu=c["gpu"].value, inter_link=c["inter"].value,
                           precision=c["precision"].value, context_parallel=(1, 2, 4, 8, 16),
                           ep_overlap=c["ep_overlap"].value,
                           intra_link=None if c["intra"].value.startswith("(") else c["intra"].value)
        except ValueError as e:
            self.result.value = f"<b style='color:#E45756'>{e}</b>"
            return
        best = table.iloc[0]
        self.result.value = (f"<b>Best layout (modelled):</b> {table.attrs['reason']}<br>"
                             f"{int(table['fits'].sum())} of {len(table)} layouts fit in memory.")
        heat = layout_heatmap(table)
        with self.heatmap.batch_update():
            self.heatmap.data = []
            self.heatmap.add_trace(heat.data[0])
            self.heatmap.layout = heat.layout
        _refresh(self.heatmap_view, self.heatmap)
        self.best = table
        self._set({"tp": best["tp"]})
        self._limit_layout()   # the pp choices of the winner's tp
        self._set({"pp": best["pp"]})
        self._limit_layout()   # the cp choices of the winner's tp x pp
        self._set({"cp": best["cp"]})
        self._limit_layout()   # the ep choices of the winner's stage
        self._set({k: best[k] for k in ("ep", "virtual_stages", "micro_batch", "zero", "recompute")})
        self._searched = self._search_key()
        self.update()


def planner(**kwargs) -> Planner:
    """The training-run planner (see :class:`Planner`); display ``planner().ui``.

    >>> app = planner(model="gpt3-175b", gpu="A100 SXM 80GB")   # doctest: +SKIP
    >>> app.ui                                                    # doctest: +SKIP
    """
    return Planner(**kwargs)
