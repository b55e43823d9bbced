"""Instrumented communication: collectives that record themselves on the rank's trace.

>>> import torch
>>> from gpuviz.run import comm
>>> comm.backward(torch.ones(2, requires_grad=True).sum())   # no tracer: plain backward
"""

from __future__ import annotations

from typing import Any

from gpuviz.run.tracer import COMM_LANE, get_tracer, span


def _untraced(fn):
    """torch's own function, where :mod:`gpuviz.run.auto` wrapped it: these record themselves."""
    return getattr(fn, "_gpuviz_original", fn)


def all_reduce(tensor, wait: bool = True, name: str = "all_reduce"):
    """All-reduce ``tensor`` (sum), traced as waiting (``idle``) then ``comm``.

    With ``wait=True`` a barrier first absorbs the time this rank waits for the
    slowest one, so the ``comm`` span holds only the transfer itself.
    """
    import torch.distributed as dist

    if wait:
        with span("wait for others", cat="idle"):
            _untraced(dist.barrier)()
    with span(name, cat="comm", bytes=tensor.numel() * tensor.element_size()):
        _untraced(dist.all_reduce)(tensor)
    return tensor


def all_reduce_grads(model, wait: bool = True) -> None:
    """Average every gradient of ``model`` across ranks in one flat all-reduce."""
    import torch
    import torch.distributed as dist

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce(flat, wait=wait, name="all_reduce grads")
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def backward(loss, model=None, **args: Any) -> None:
    """``loss.backward()``, traced; under DDP split into compute and the wait for buckets.

    DDP's backward returns only once every gradient bucket is all-reduced, so one span
    around it would count that wait as compute. Given the DDP ``model``, this records
    ``backward`` (compute) until the last gradient is ready, then ``wait for gradient
    buckets`` (comm): the communication the step did not hide. With CUDA timing, or
    without ``model``, it is one ``backward`` span::

        trace.backward(loss, model)
    """
    t = get_tracer()
    if t is None or t.cuda or model is None:
        with span("backward", **args):
            loss.backward()
        return
    ready = getattr(model, "_gpuviz_grad_ready", None)
    if ready is None:  # once per model: note when each gradient is accumulated
        ready = model._gpuviz_grad_ready = [0.0]

        def mark(_param) -> None:
            ready[0] = t.now()

        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(mark)
    t0 = t.now()
    loss.backward()
    done = t.now()
    last = ready[0] if t0 < ready[0] <= done else done
    t.complete("backward", "compute", t0, last - t0, **args)
    if done > last:
        t.complete("wait for gradient buckets", "comm", last, done - last, **args)


def _first(fut):
    return fut.value()[0]


def ddp_comm_hook(state, bucket, **marks):
    """A DDP communication hook that traces each gradient bucket's all-reduce.

    Records one ``comm`` span per bucket on the comm lane (``bytes``, ``bucket``), from
    launch to completion, so the figure shows it overlapping ``backward``::

        model = DistributedDataParallel(net)
        model.register_comm_hook(state=None, hook=trace.ddp_comm_hook)

    ``marks`` are added to each span's ``args`` (:mod:`gpuviz.run.auto` marks its own).
    """
    import torch.distributed as dist

    group = state if state is not None else dist.group.WORLD
    buf = bucket.buffer()
    t = get_tracer()
    buf.mul_(1.0 / group.size())   # as DDP's own path scales (a multiply is cheaper than a divide)
    # The process group's own all-reduce, as dist.all_reduce ends up calling it: one bucket,
    # dense, never in a coalescing context, so its Python checks have nothing to catch here,
    # and gpuviz.run.auto's wrapper would record the bucket twice.
    opts = dist.AllreduceOptions()
    opts.asyncOp = True
    if t is None:
        return group.allreduce([buf], opts).get_future().then(_first)
    nbytes = buf.numel() * buf.element_size()
    index = bucket.index()
    if t.cuda:
        start_ev = t.cuda_event()
    t0 = t.now()
    step_at_launch = t.step_index
    fut = group.allreduce([buf], opts).get_future()

    def done(f):
        if t.cuda:
            event = {"ph": "X", "name": f"all_reduce bucket {index}", "cat": "comm", "ts": 0.0,
                     "dur": 0.0, "pid": t.rank, "tid": COMM_LANE,
                     "args": {"step": step_at_launch, "bytes": nbytes, "bucket": index, **marks}}
            t.complete_cuda(start_ev, t.cuda_event(), event)
        else:
            t.complete(f"all_reduce bucket {index}", "comm", t0, t.now() - t0, lane=COMM_LANE,
                       step=step_at_launch, bytes=nbytes, bucket=index, **marks)
        return _first(f)

    return fut.then(done)

