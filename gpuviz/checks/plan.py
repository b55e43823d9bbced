"""Self-checking exercises of the planning lab .

Each check asks the cluster model (:mod:`gpuviz.plan.prediction`) for the right answer, so what it
calls right is modelled, not measured, and its messages say so.

>>> from gpuviz import checks
>>> from gpuviz.plan import Config
>>> checks.fits_in_memory(True, Config("llama3-8b", gpus=8, dp=8, global_batch=64, zero=1,
...                                    recompute="full"))
Correct! llama3-8b, dp=8 tp=1 pp=1, ZeRO-1, recompute full: ... GiB per GPU of the 78.6 GiB left after 1 GiB reserved on a 79.6 GiB GPU (...; modelled): it fits.
>>> checks.mfu_from_throughput(lambda tps, n, gpus, peak: 6 * n * tps / (gpus * peak),
...                            tokens_per_s=1e5, model="llama3-8b", gpus=8)
Correct! 6 x 8.03e+09 parameters x 1e+05 tokens/s = 4.82 PFLOP/s over 8 x 989 TFLOP/s: MFU 60.9% ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpuviz.checks.core import Result, _close, _number, _value

_SHARDS = {0: "nothing", 1: "the optimizer state", 2: "the optimizer state and the gradients",
           3: "the optimizer state, the gradients and the weights"}


def _where(c) -> str:
    return (f"{c.model.name}, dp={c.dp} tp={c.tp} pp={c.pp}, ZeRO-{c.zero}, "
            f"recompute {c.recompute}")


def _config(config):
    from gpuviz.plan.config import Config

    if not isinstance(config, Config):
        raise ValueError(f"config={config!r}: give a gpuviz.plan.prediction.Config")
    return config


def fits_in_memory(answer: Any, config) -> Result:
    """Does ``config`` (a :class:`gpuviz.plan.prediction.Config`) fit in its GPU's memory? ``answer``:
    True or False, or ``f(config)`` returning one. Right and wrong as the model says:
    weights, gradients, optimizer state (per ZeRO stage), activations and buffers."""
    from gpuviz.plan.prediction import predict
    from gpuviz.plan.terms import PRECISIONS

    c = _config(config)
    p = predict(c)
    got = _value(answer, c)
    if got is None:
        return Result(False, "Replace `None` with True (it fits) or False (it does not).")
    if not isinstance(got, bool) and type(got).__name__ != "bool_":
        return Result(False, f"Answer True or False, not {type(got).__name__} {got!r}.")
    table = p.memory_table().set_index("kind")
    mem = table["GiB"].drop("reserved")
    reserved = float(table.loc["reserved", "GiB"])
    cap = float(table["capacity_GiB"].iloc[0])
    room = cap - reserved                               # what the modelled terms may fill
    state, act, total = mem[["params", "grads", "optimizer"]].sum(), mem["activations"], mem.sum()
    parts = ", ".join(f"{k} {v:.1f}" for k, v in mem.items() if v > 0)
    where = _where(c)
    if bool(got) == p.fits:
        return Result(True, f"{where}: {total:.1f} GiB per GPU of the {room:.1f} GiB left after "
                            f"{reserved:g} GiB reserved on a {cap:.1f} GiB GPU ({parts}; modelled): "
                            f"it {'fits' if p.fits else 'does not fit'}.")
    pb, gb, ob, _ = PRECISIONS[c.precision]
    per_param = pb + gb + ob
    held = mem["grads"] * 2**30 / gb * (c.dp if c.zero >= 2 else 1)   # parameters on one GPU
    if got:                                                             # said it fits; it does not
        if state > room:
            return Result(False, f"The model state alone needs {state:.1f} GiB per GPU: {pb} + {gb} + "
                                 f"{ob} bytes per parameter (weights, gradients, Adam state) of the "
                                 f"{held / 1e9:.3g} billion parameters each GPU holds (1/(tp x pp) "
                                 f"of the model); ZeRO-{c.zero} shards {_SHARDS[c.zero]} over dp. "
                                 f"{room:.1f} GiB is not enough.")
        return Result(False, f"The model state fits ({state:.1f} GiB), but the activations add "
                             f"{act:.1f} GiB ({c.recompute} recomputation): {total:.1f} GiB of "
                             f"{room:.1f} ({cap:.1f} less {reserved:g} reserved).")
    unsharded = held * per_param / 2**30 + act + mem["buffers"]
    if c.zero >= 1 and unsharded > room:
        return Result(False, f"Without ZeRO it would not ({unsharded:.1f} GiB), but ZeRO-{c.zero} "
                             f"splits {_SHARDS[c.zero]} over the dp={c.dp} replicas: {state:.1f} GiB "
                             f"of model state and {act:.1f} GiB of activations, {total:.1f} GiB of "
                             f"{room:.1f}.")
    whole = c.model.n_params * per_param / 2**30
    if c.tp * c.pp > 1 and whole > room:
        return Result(False, f"The whole model's state would be {whole:.0f} GiB, but tp x pp = "
                             f"{c.tp * c.pp} splits the weights: each GPU holds {held / 1e9:.3g} "
                             f"billion parameters, {state:.1f} GiB of state, {total:.1f} GiB in all.")
    return Result(False, f"It fits: {total:.1f} GiB per GPU of the {room:.1f} GiB left after "
                         f"{reserved:g} GiB reserved ({parts}; modelled).")


def mfu_from_throughput(answer: float | Callable, tokens_per_s: float, model, gpus: int,
                        gpu: str = "H100 SXM", precision: str = "bf16", rtol: float = 0.02) -> Result:
    """Model FLOPs utilisation of a run training ``tokens_per_s`` tokens per second of
    ``model`` on ``gpus`` GPUs: 6 N FLOPs per token (Kaplan et al. 2020) times tokens/s,
    over every GPU's dense peak for ``precision``. Counting the attention's FLOPs as well
    (as :func:`gpuviz.plan.prediction.predict` does) is also right. ``answer``: a fraction, or
    ``f(tokens_per_s, n_params, gpus, peak_flops)``."""
    from gpuviz.plan.config import Config
    from gpuviz.plan.prediction import predict
    from gpuviz.plan.transformer import transformer
    from gpuviz.sharing.accelerators import accelerator

    if isinstance(tokens_per_s, bool) or not isinstance(tokens_per_s, (int, float)) or not tokens_per_s > 0:
        raise ValueError(f"tokens_per_s={tokens_per_s!r}: must be a number > 0")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus={gpus!r}: must be an integer >= 1")
    m = transformer(model)
    hw = accelerator(gpu)
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision={precision!r}: use 'bf16' or 'fp32'")
    peak = hw[f"{precision}_flops"]
    n = m.n_params
    got = _value(answer, tokens_per_s, n, gpus, peak)
    if (bad := _number(got, "MFU (a fraction)")) is not None:
        return bad
    got = float(got)
    want = 6 * n * tokens_per_s / (gpus * peak)
    with_attention = predict(Config(m, gpus=1, global_batch=1)).model_flops_per_token
    want_attn = with_attention * tokens_per_s / (gpus * peak)
    how = (f"6 x {n:.3g} parameters x {tokens_per_s:.3g} tokens/s = {6 * n * tokens_per_s / 1e15:.3g} "
           f"PFLOP/s over {gpus} x {peak / 1e12:.0f} TFLOP/s")
    if _close(got, want, rtol):
        return Result(True, f"{how}: MFU {want:.1%} (with the attention's FLOPs, "
                            f"{with_attention / (6 * n):.2f} x 6N per token: {want_attn:.1%}).")
    if _close(got, want_attn, rtol):
        return Result(True, f"{want_attn:.1%}, counting the attention's FLOPs ({with_attention:.3g} "
                            f"per token); with 6N alone, {want:.1%}.")
    if _close(got, want * 100, rtol) or _close(got, want_attn * 100, rtol):
        return Result(False, "That looks like a percentage; give a fraction between 0 and 1.")
    if _close(got, want / 3, rtol):
        return Result(False, "2N FLOPs per token is the forward pass only; the backward pass costs "
                             "twice as much again: 6N per token in training.")
    if _close(got, want * 4 / 3, rtol):
        return Result(False, "8N counts a recomputed forward pass. MFU counts only the model's own "
                             "FLOPs (6N per token), whatever the hardware recomputes.")
    if _close(got, want * gpus, rtol):
        return Result(False, f"That divides by one GPU's peak; the tokens/s come from all {gpus} GPUs.")
    other = "fp32" if precision == "bf16" else "bf16"
    if _close(got, want * peak / hw[f"{other}_flops"], rtol):
        return Result(False, f"That uses the {other} peak; the run computes in {precision} "
                             f"({peak / 1e12:.0f} TFLOP/s dense).")
    if _close(got, want / 2, rtol):
        return Result(False, "That uses the peak with sparsity (twice the dense peak); MFU is "
                             "against the dense peak.")
    if got > 1:
        return Result(False, f"An MFU above 1 would beat the hardware's peak. {how}.")
    return Result(False, f"You gave {got:.4g}. MFU = (6N x tokens/s) / (GPUs x peak FLOP/s).")


def dominant_term(answer: str | Callable, config) -> Result:
    """Which term of :func:`gpuviz.plan.prediction.predict`'s step takes the most time for ``config``:
    one of :data:`gpuviz.plan.terms.TIME_TERMS`. ``answer``: a term, or ``f(config)``."""
    from gpuviz.plan.prediction import predict
    from gpuviz.plan.terms import TIME_TERMS

    c = _config(config)
    p = predict(c)
    got = _value(answer, c)
    if got is None:
        return Result(False, "Replace `None` with the name of a term: " + ", ".join(TIME_TERMS) + ".")
    t = p.table().set_index("term")
    share = ", ".join(f"{k} {t.loc[k, 'share']:.0%}" for k in t["share"].nlargest(3).index)
    want = p.dominant
    if got == want:
        return Result(True, f"{want}: {t.loc[want, 'seconds']:.3g} s of a {p.step_s:.3g} s step "
                            f"(modelled; {share}).")
    if got not in TIME_TERMS:
        hint = (" Communication is split by kind: tp_comm, pp_comm, zero3_comm, ep_comm, dp_comm."
                if isinstance(got, str) and "comm" in got.lower() else "")
        return Result(False, f"{got!r} is not a term; give one of {', '.join(TIME_TERMS)}.{hint}")
    why = f"Not {got} ({t.loc[got, 'share']:.0%} of the step): the largest is {want} ({share})."
    if want == "bubble":
        m = c.global_batch // (c.dp * c.micro_batch)
        why += (f" With p = {c.pp} stages and only m = {m} micro-batches per replica, each stage "
                f"idles (p-1)/(m+p-1) = {(c.pp - 1) / (m + c.pp - 1):.0%} of the schedule.")
    elif want == "dp_comm":
        why += (" The gradient all-reduce between servers takes longer than the backward pass "
                "it could hide behind.")
    elif want == "tp_comm":
        why += (" Tensor parallelism all-reduces activations 4 times per layer and micro-batch, "
                "on the critical path.")
    elif want == "ep_comm":
        why += (" Every MoE layer sends each token's copies to their experts and back, an "
                "all-to-all each way, forward and backward, "
                + ("and what another micro-batch's compute does not cover is on the critical path."
                   if c.ep_overlap else "on the critical path."))
    return Result(False, why)


def expert_weights_gib(answer: Any, config, rtol: float = 0.05) -> Result:
    """GiB of routed experts' weights each GPU of ``config`` holds (a mixture of experts):
    the experts of the ``ceil(layers / pp)`` layers of its pipeline stage, ``experts / ep``
    of them per layer, each whole (not split by tp), at the weights' bytes per parameter.
    ``answer``: a number or ``f(config)``."""
    import math

    from gpuviz.plan.terms import PRECISIONS

    c = _config(config)
    m = c.model
    if not m.moe:
        raise ValueError(f"config: the model {m.name} has no experts; give a mixture of experts")
    got = _value(answer, c)
    bad = _number(got, "GiB of expert weights on one GPU")
    if bad is not None:
        return bad
    got = float(got)
    layers, nbytes = math.ceil(m.layers / c.pp), PRECISIONS[c.precision][0]
    want = layers * m.routed_expert_params / c.ep * nbytes / 2**30
    how = (f"{layers} layers x {m.experts} experts x {m.routed_expert_params // m.experts:,} weights "
           f"/ ep={c.ep} x {nbytes} bytes = {want:.2f} GiB")
    if _close(got, want, rtol):
        return Result(True, f"{how} (the model's count).")
    hints = [(want * c.ep, f"Each GPU holds only experts / ep = {m.experts // c.ep} of each layer's "
                           f"{m.experts} experts: divide by ep={c.ep}."),
             (want * c.pp, f"A pipeline stage holds ceil({m.layers} / {c.pp}) = {layers} of the "
                           f"{m.layers} layers, not all of them."),
             (want / c.tp, f"The experts are whole on each GPU (Megatron-Core's parallel folding): "
                           f"not split again by tp={c.tp}."),
             (want * m.top_k / m.experts, f"A GPU stores every expert it is given, not only the "
                                          f"{m.top_k} one token uses."),
             (want * 2**30 / 1e9, "That is GB (10^9 bytes); give GiB (2^30 bytes)."),
             (want * 4 / nbytes, f"4 bytes is fp32; this {c.precision} run keeps its weights in "
                                 f"{nbytes} bytes per parameter.")]
    for value, why in hints:
        if _close(got, value, rtol):
            return Result(False, why)
    return Result(False, f"You gave {got:.4g} GiB. Count the stage's layers, the experts on this "
                         f"GPU, each expert's weights and the bytes per weight.")


def best_layout(answer: Any, model, gpus: int, global_batch: int, tolerance: float = 0.05,
                **search_kwargs) -> Result:
    """A layout of ``model`` on ``gpus`` GPUs within ``tolerance`` of the fastest that fits
    (:func:`gpuviz.plan.search.search`, modelled). ``answer``: a dict with ``dp``, ``tp``,
    ``pp`` and optionally ``micro_batch``, ``zero``, ``recompute`` (the best of the others is
    taken), a :class:`gpuviz.plan.prediction.Config`, or a function of no arguments returning one."""
    from gpuviz.plan.config import Config
    from gpuviz.plan.search import layout_name, search
    from gpuviz.plan.terms import TIME_TERMS

    ok = isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and 0 <= tolerance < 1
    if not ok:
        raise ValueError(f"tolerance={tolerance!r}: must be a number in [0, 1)")
    table = search(model, gpus=gpus, global_batch=global_batch, **search_kwargs)
    got = _value(answer)
    if got is None:
        return Result(False, "Replace `None` with a dict such as {'dp': ..., 'tp': ..., 'pp': ...}.")
    if isinstance(got, Config):
        got = {k: getattr(got, k) for k in ("dp", "tp", "pp", "micro_batch", "zero", "recompute")}
    keys = ("dp", "tp", "pp", "micro_batch", "zero", "recompute")
    if not isinstance(got, dict) or not {"dp", "tp", "pp"} <= set(got) or set(got) - set(keys):
        return Result(False, f"Give a dict with dp, tp and pp (and, if you like, micro_batch, zero, "
                             f"recompute), not {got!r}.")
    dp, tp, pp = got["dp"], got["tp"], got["pp"]
    if dp * tp * pp != gpus:
        return Result(False, f"dp x tp x pp = {dp} x {tp} x {pp} = {dp * tp * pp}, but there are "
                             f"{gpus} GPUs: a layout uses each GPU once.")
    rows = table
    for k, v in got.items():
        rows = rows[rows[k] == v]
    if rows.empty:
        spec, node = table.attrs["best"].model, table.attrs["best"].gpus_per_node
        why = (f"tp={tp} spans more than one server ({node} GPUs): its all-reduces would cross the "
               "network, so the search keeps tp inside a server" if tp > node else
               f"tp={tp} does not divide the {spec.heads} heads" if spec.heads % tp else
               f"the batch of {global_batch} does not split over dp={dp}" if global_batch % dp else
               "one of micro_batch, zero or recompute is not a searched value (micro-batches that "
               "divide the batch per replica; ZeRO 0-3; none, selective, full)")
        return Result(False, f"{got} is not a layout the search can run: {why}.")
    fit = rows[rows["fits"]]
    cap = table.attrs["capacity_GiB"]
    if fit.empty:
        low = rows.loc[rows["memory_GiB"].idxmin()]
        return Result(False, f"Nothing with {got} fits in {cap:.1f} GiB per GPU: the smallest "
                             f"({layout_name(low)}) needs {low['memory_GiB']:.1f} GiB (modelled).")
    mine, best = fit.iloc[0], table.iloc[0]
    ratio = mine["tokens_per_s"] / best["tokens_per_s"]
    if ratio >= 1 - tolerance:
        return Result(True, f"{layout_name(mine)}: {mine['tokens_per_s']:,.0f} tokens/s, {ratio:.1%} of the "
                            f"fastest layout's, {mine['memory_GiB']:.1f} GiB per GPU (modelled).")
    loss = {k: mine[k] - best[k] for k in TIME_TERMS}
    k = max(loss, key=loss.get)
    return Result(False, f"{layout_name(mine)} fits ({mine['memory_GiB']:.1f} GiB) but makes {ratio:.0%} of "
                         f"the fastest layout's tokens/s; it loses most in {k} ({loss[k]:.3g} s more "
                         f"per step). Find a layout within {tolerance:.0%}.")


# Imported last: gpuviz.checks re-exports this module's checks at its own end, so either
# module can be imported first without a circular-import error.
