"""Pipeline parallelism from point-to-point sends: the GPipe and 1F1B schedules.

Stage s (= rank s of ``group``) holds blocks [s*L/p, (s+1)*L/p) of the GPT; stage 0 also
the embedding, the last stage the final LayerNorm, the head and the loss. The global
batch is cut into m micro-batches; each stage receives a micro-batch's activation from
the stage before it, runs its blocks and sends the result on (``dist.isend``/``irecv``:
shapes are known from the config, so none is exchanged); the gradients travel back the
same way. Gradients of the m micro-batches add up (each loss is scaled by 1/m), then
every stage's Adam steps its own parameters.

- **GPipe** (Huang et al. 2019, "GPipe: Efficient Training of Giant Neural Networks using
  Pipeline Parallelism", NeurIPS): all m forwards, then all m backwards. A stage holds
  the saved activations of all m micro-batches at once.
- **1F1B** (PipeDream-Flush: Narayanan et al. 2021, "Memory-Efficient Pipeline-Parallel DNN
  Training", ICML; the schedule of Megatron-LM, Narayanan et al. 2021, SC21): stage s runs
  p-s-1 warm-up forwards, then one forward and one backward in turn, then the last
  backwards. A stage holds at most p-s micro-batches.

Both idle for the same share of the step, the bubble (p-1)/(m+p-1) (:func:`bubble_fraction`):
1F1B saves memory, not time. Traced so the schedule can be drawn: ``forward``/``backward``
(compute, args ``microbatch``, ``stage``), ``send activation``/``send grad`` (comm lane,
``bytes``; from launch until the neighbour has it), ``wait for activation``/``wait for grad`` (idle: the bubble) and ``optimizer step``.

A job whose every rank runs (``gpuviz.launch("my_pipeline.py", nproc=4)`` or ``torchrun
--standalone --nproc-per-node 4 -m gpuviz.run.worker my_pipeline.py --run-dir runs/pp``)::

    pipe = Pipeline(GPT(cfg, seed=0), schedule="1f1b", micro_batches=8)
    for step in range(10):
        loss = pipe.train_step(*data.batch(step, 32))
        trace.step(loss=loss)

then ``measured_bubble(gpuviz.load_run("runs/pp"))``. Without a process group it is one
stage (gradient accumulation over micro-batches), equal to the single process:

>>> from gpuviz.parallel.strategy import SingleProcess
>>> from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData
>>> cfg = GPTConfig(layers=2, dim=32, seq_len=16, vocab=32)
>>> x, y = TokenData(cfg.vocab, cfg.seq_len).batch(0, 8)
>>> pipe = Pipeline(GPT(cfg, seed=0), schedule="gpipe", micro_batches=4)
>>> abs(pipe.train_step(x, y) - SingleProcess(GPT(cfg, seed=0)).train_step(x, y)) < 1e-5
True
>>> schedule("1f1b", stage=0, stages=2, micro_batches=3)
[('F', 0), ('F', 1), ('B', 0), ('F', 2), ('B', 1), ('B', 2)]
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.parallel.strategy import LR, ActivationMeter, adam, optimizer_bytes, tensor_bytes
from gpuviz.run import trace
from gpuviz.workloads.gpt import GPT, lm_loss

if TYPE_CHECKING:
    import pandas

SCHEDULES = ("gpipe", "1f1b")


def _check_count(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name}={value!r}: must be an integer >= {least}")
    return value


def schedule(name: str, stage: int, stages: int, micro_batches: int) -> list[tuple[str, int]]:
    """The order in which ``stage`` runs forwards ``("F", i)`` and backwards ``("B", i)``.

    >>> schedule("gpipe", stage=1, stages=2, micro_batches=2)
    [('F', 0), ('F', 1), ('B', 0), ('B', 1)]
    """
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r}: must be one of {', '.join(map(repr, SCHEDULES))}")
    m = micro_batches
    if name == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    warm = min(stages - stage - 1, m)              # PipeDream-Flush's warm-up forwards
    ops = [("F", i) for i in range(warm)]
    for i in range(m - warm):                      # steady state: one forward, one backward
        ops += [("F", warm + i), ("B", i)]
    return ops + [("B", i) for i in range(m - warm, m)]   # cool-down


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """The share of a pipelined step each stage idles: (p-1)/(m+p-1).

    From GPipe (Huang et al. 2019, Section 2.2): with equal stages the step takes m+p-1
    slots of one micro-batch's forward and backward, and each stage works in m of them.
    The same for 1F1B, which changes the order (and the memory), not the slots.

    >>> bubble_fraction(4, 8)
    0.2727272727272727
    """
    p, m = _check_count("stages", stages, 1), _check_count("micro_batches", micro_batches, 1)
    return (p - 1) / (m + p - 1)


class Stage(nn.Module):
    """The part of ``model`` that stage ``stage`` of ``stages`` runs (the same modules,
    not copies): blocks [s*L/p, (s+1)*L/p), with the embedding on the first stage and
    the final LayerNorm and head (logits out) on the last."""

    def __init__(self, model: GPT, stage: int, stages: int):
        super().__init__()
        per = len(model.blocks) // stages
        self.first, self.last = stage == 0, stage == stages - 1
        if self.first:
            self.tok, self.pos = model.tok, model.pos
        self.blocks = model.blocks[stage * per:(stage + 1) * per]
        if self.last:
            self.ln_f, self.head = model.ln_f, model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            x = GPT.embed(self, x)                 # GPT's own code, run on the same layers
        for block in self.blocks:
            x = block(x)
        return GPT.final(self, x) if self.last else x


class _Inbox:
    """The m tensors one neighbour sends in a step, in order; each receive is posted one
    ahead, so the neighbour's send can finish before this stage asks for it."""

    def __init__(self, src: int, like: torch.Tensor, count: int, wait: str, stage: int, group):
        self.src, self.like, self.count, self.group = src, like, count, group
        self.wait, self.stage, self.posted = wait, stage, []
        self._post()

    def _post(self) -> None:
        if len(self.posted) < self.count:
            buf = torch.empty_like(self.like)
            self.posted.append((buf, dist.irecv(buf, self.src, group=self.group)))

    def get(self, i: int) -> torch.Tensor:
        self._post()                               # the receive after this one
        buf, work = self.posted[i]
        with trace.span(self.wait, cat="idle", microbatch=i, stage=self.stage):
            work.wait()
        return buf


class Pipeline:
    """Pipeline-parallel training of a :class:`~gpuviz.workloads.gpt.GPT` on the ranks of
    ``group``, with the ``"gpipe"`` or ``"1f1b"`` schedule (see the module docstring)."""

    def __init__(self, model: GPT, schedule: str = "1f1b", micro_batches: int = 4,
                 group: dist.ProcessGroup | None = None, lr: float = LR):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r}: must be one of {', '.join(map(repr, SCHEDULES))}")
        spread = dist.is_available() and dist.is_initialized()
        p = dist.get_world_size(group) if spread else 1
        s = dist.get_rank(group) if spread else 0
        if s < 0:
            raise ValueError(f"group: rank {dist.get_rank()} is not in it; build the pipeline "
                             "only on the ranks of its group")
        m = _check_count("micro_batches", micro_batches, 1)
        if m < p:
            raise ValueError(f"micro_batches={m} is fewer than the {p} stages: the pipeline would "
                             f"never fill; give micro_batches >= {p}")
        if len(model.blocks) % p:
            raise ValueError(f"model layers={len(model.blocks)} cannot be split evenly over "
                             f"{p} stages: give a number of layers that is a multiple of {p}")
        self.name, self.micro_batches, self.stage, self.stages = schedule, m, s, p
        self.cfg, self.group = model.cfg, group
        self.device = model.head.weight.device
        parts = [Stage(model, k, p) for k in range(p)]
        self.part = parts[s]
        ids = [{id(t) for t in part.parameters()} for part in parts]
        self._owned = [[n for n, t in model.named_parameters() if id(t) in own] for own in ids]
        self._like = dict(model.named_parameters())          # shapes of every stage's tensors
        self.opt = adam(self.part.parameters(), lr)
        self._ranks = [dist.get_global_rank(group, k) if group is not None else k for k in range(p)]
        # A send completes only when the receiver takes it; one thread per direction waits
        # for its sends (in order) and records each from launch to completion.
        self._senders = [ThreadPoolExecutor(1, thread_name_prefix=f"pp-send-{d}")
                         for d in ("act", "grad")] if p > 1 else []

    def own_parameters(self) -> dict[str, torch.Tensor]:
        """This stage's parameters, named as in the model's ``named_parameters()``."""
        return {n: self._like[n] for n in self._owned[self.stage]}

    def _send(self, direction: int, tensor: torch.Tensor, name: str, i: int) -> Future:
        dst = self._ranks[self.stage + (1 if direction == 0 else -1)]
        t = trace.get_tracer()
        t0 = t.now() if t is not None else 0.0
        work = dist.isend(tensor, dst, group=self.group)
        step = t.step_index if t is not None else 0
        args = {"bytes": tensor.numel() * tensor.element_size(), "microbatch": i, "stage": self.stage}

        def done():  # on the direction's waiting thread: the send ends when the receiver has it
            work.wait()
            if t is not None:
                t.complete(name, "comm", t0, t.now() - t0, lane=trace.COMM_LANE, step=step, **args)

        return self._senders[direction].submit(done)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        m, s, p = self.micro_batches, self.stage, self.stages
        n = x.shape[0]
        if n % m:
            raise ValueError(f"batch={n} cannot be cut into micro_batches={m} equal micro-batches: "
                             f"give a global batch that is a multiple of {m}")
        # Copies, so each micro-batch's saved tokens are its own storage, not the batch's.
        xs, ys = [c.clone() for c in x.split(n // m)], [c.clone() for c in y.split(n // m)]
        first, last = s == 0, s == p - 1
        # What travels between stages: (micro-batch, seq, dim), known from the config.
        like = torch.empty(n // m, self.cfg.seq_len, self.cfg.dim, device=self.device)
        acts = None if first else _Inbox(self._ranks[s - 1], like, m, "wait for activation", s, self.group)
        grads = None if last else _Inbox(self._ranks[s + 1], like, m, "wait for grad", s, self.group)
        held, sends, losses = {}, [], []
        in_flight = peak = 0
        for op, i in schedule(self.name, s, p, m):
            if op == "F":
                inp = xs[i] if first else acts.get(i).requires_grad_()
                with trace.span("forward", microbatch=i, stage=s, schedule=self.name), \
                        ActivationMeter(self.part.parameters()) as meter:
                    out = self.part(inp)
                    if last:
                        out = lm_loss(out, ys[i]) / m
                if not last:
                    sends.append(self._send(0, out.detach(), "send activation", i))
                held[i] = (inp, out, meter.bytes)
                in_flight += meter.bytes
                peak = max(peak, in_flight)
            else:
                inp, out, nbytes = held.pop(i)
                grad = None if last else grads.get(i)
                with trace.span("backward", microbatch=i, stage=s, schedule=self.name):
                    torch.autograd.backward(out, grad)
                if not first:
                    sends.append(self._send(1, inp.grad, "send grad", i))
                in_flight -= nbytes
                if last:
                    losses.append(out.detach())
        if sends:
            with trace.span("wait for sends", cat="idle", stage=s):
                for f in sends:
                    f.result()
        with trace.span("optimizer step", cat="optimizer", stage=s):
            self.opt.step()
            params = list(self.part.parameters())
            self._memory = {"params": tensor_bytes(params),
                            "grads": tensor_bytes(t.grad for t in params),
                            "optimizer": optimizer_bytes(self.opt), "activations": peak}
            self.opt.zero_grad(set_to_none=True)
        loss = torch.stack(losses).sum() if last else torch.zeros((), device=like.device)
        if p > 1:
            with trace.span("broadcast loss", cat="comm", bytes=loss.element_size()):
                dist.broadcast(loss, self._ranks[p - 1], group=self.group)
        return loss.item()

    def full_parameters(self) -> dict[str, torch.Tensor]:
        """Every parameter of the model, each broadcast from the stage that owns it (a
        collective: every rank calls it)."""
        out = {}
        for k, names in enumerate(self._owned):
            if k == self.stage:
                flat = torch.cat([self._like[n].detach().reshape(-1) for n in names])
            else:
                flat = torch.empty(sum(self._like[n].numel() for n in names), device=self.device)
            if self.stages > 1:
                dist.broadcast(flat, self._ranks[k], group=self.group)
            for n, piece in zip(names, flat.split([self._like[n].numel() for n in names]),
                                strict=True):
                out[n] = piece.view_as(self._like[n]).clone()
        return out

    def memory(self) -> dict[str, int]:
        """Bytes of this stage in the last step: its params, grads and optimizer state
        (after the optimizer step), and activations: the most bytes of saved activations
        held at once as the schedule ran (GPipe: m micro-batches; 1F1B: at most p-s)."""
        return dict(self._memory)


def measured_bubble(run) -> pandas.DataFrame:
    """The bubble of each pipelined step on each rank, measured, beside (p-1)/(m+p-1).

    The formula counts idle slots in the whole pipeline's step, the same span of time on
    every stage. So the window of a step is shared by all ranks: from the earliest
    ``forward`` start to the latest ``backward`` end on any rank (stage 0's first forward
    to its last backward). ``bubble = 1 - busy / window``, with ``busy`` the rank's time in
    ``forward`` and ``backward`` spans: everything else inside the window (waiting for a
    neighbour, launching sends) is bubble. With equal stages and free communication it
    equals :func:`bubble_fraction` on every stage; a stage's own first-forward-to-last-
    backward span would not (a later stage starts late and ends early). ``idle`` is the
    rank's ``idle`` spans inside the window, the part of the bubble spent blocked.

    Columns: rank, step, schedule, stages, micro_batches, window, busy, idle (seconds),
    bubble, predicted. Steps without pipeline spans are left out.

    >>> measured_bubble(gpuviz.load_run("runs/pp")).groupby("rank")["bubble"].mean()  # doctest: +SKIP
    """
    import pandas as pd  # here, so a worker that trains does not import pandas

    sp = run.spans
    mb = sp["args"].map(lambda a: a.get("microbatch") if isinstance(a, dict) else None)
    work = sp[mb.notna() & sp["name"].isin(["forward", "backward"])].assign(microbatch=mb)
    rows = []
    for step, st in work.groupby("step"):
        lo, hi = float(st["start"].min()), float(st["end"].max())
        stages = int(max(a["stage"] for a in st["args"])) + 1
        m = int(st["microbatch"].nunique())
        at = sp[(sp["step"] == step) & (sp["cat"] == "idle") & (sp["lane"] == "main")]
        for rank, mine in st.groupby("rank"):
            busy = float(mine["dur"].sum())
            w = at[at["rank"] == rank]
            idle = float((w["end"].clip(upper=hi) - w["start"].clip(lower=lo)).clip(lower=0).sum())
            rows.append({"rank": int(rank), "step": int(step),
                         "schedule": mine["args"].iloc[0].get("schedule"), "stages": stages,
                         "micro_batches": m, "window": hi - lo, "busy": busy, "idle": idle,
                         "bubble": 1 - busy / (hi - lo), "predicted": bubble_fraction(stages, m)})
    cols = ["rank", "step", "schedule", "stages", "micro_batches", "window", "busy", "idle",
            "bubble", "predicted"]
    return pd.DataFrame(rows, columns=cols)
