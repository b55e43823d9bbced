"""All-reduce from point-to-point messages: first the naive way, then the ring.

The ring all-reduce is from Thakur, Rabenseifner & Gropp (2005), "Optimization of
Collective Communication Operations in MPICH" (IJHPCA 19(1)): split the tensor into p
chunks; in p-1 *reduce-scatter* steps every rank sends one chunk to its right neighbour
and adds the chunk it receives from its left, so that each rank ends up holding one chunk
summed over all ranks; in p-1 *all-gather* steps the finished chunks go once more around
the ring. Every rank sends 2(p-1)/p of the tensor whatever p is, which Patarasuk & Yuan
(2009), "Bandwidth optimal all-reduction algorithms for clusters of workstations" (JPDC
69(2)), prove is the least any all-reduce can send. Time: 2(p-1) a + 2(p-1)/p n b, see
:func:`gpuviz.plan.prediction.ring_allreduce_seconds`.

Run it on 4 CPU processes and see its 2(p-1) steps in the timeline::

    gpuviz run gpuviz.workloads.ring:main --nproc 4

>>> simulate_ring(3)[1].sends   # step 1: rank r sends chunk r to rank r+1
((0, 1, 0, frozenset({0})), (1, 2, 1, frozenset({1})), (2, 0, 2, frozenset({2})))
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuviz.run.trace import span

REDUCE_SCATTER, ALL_GATHER = "reduce-scatter", "all-gather"


def naive_all_reduce(tensor, group=None):
    """The simplest all-reduce (sum, in place): everyone sends to the first rank, which adds
    and sends the sum back. Correct, but the first rank moves 2(p-1) whole tensors while
    the others wait: compare :func:`ring_all_reduce`, where every rank moves 2(p-1)/p.
    """
    import torch.distributed as dist

    group, rank, world = members(group)
    root = dist.get_global_rank(group, 0)
    nbytes = tensor.numel() * tensor.element_size()
    if rank == 0:
        buf = tensor.new_empty(tensor.shape)
        for src in range(1, world):
            with span(f"naive gather {src}", cat="comm", bytes=nbytes):
                dist.recv(buf, src=dist.get_global_rank(group, src), group=group)
            tensor += buf
        for dst in range(1, world):
            with span(f"naive broadcast {dst}", cat="comm", bytes=nbytes):
                dist.send(tensor, dst=dist.get_global_rank(group, dst), group=group)
    else:
        with span("naive gather", cat="comm", bytes=nbytes):
            dist.send(tensor, dst=root, group=group)
        with span("naive broadcast", cat="comm", bytes=nbytes):
            dist.recv(tensor, src=root, group=group)
    return tensor


def ring_schedule(rank: int, world: int, step: int) -> tuple[str, int, int]:
    """What ``rank`` does at ``step`` (0 to 2(world-1) - 1) of a ring all-reduce:
    ``(phase, chunk it sends right, chunk it receives from the left)``.

    Reduce-scatter step k: send chunk (r - k), receive and add chunk (r - k - 1); after
    p-1 steps rank r holds chunk r+1 summed over all ranks. All-gather step k: send
    chunk (r + 1 - k), receive chunk (r - k) and keep it. (All indices mod p.)

    >>> ring_schedule(0, 4, 0), ring_schedule(0, 4, 3)
    (('reduce-scatter', 0, 3), ('all-gather', 1, 0))
    """
    if step < world - 1:
        return REDUCE_SCATTER, (rank - step) % world, (rank - step - 1) % world
    k = step - (world - 1)
    return ALL_GATHER, (rank + 1 - k) % world, (rank - k) % world


def chunk_sizes(numel: int, world: int) -> list[int]:
    """Elements in each of the ``world`` chunks (``torch.tensor_split``'s rule: the first
    ``numel % world`` chunks get one more; with numel < world some are empty).

    >>> chunk_sizes(10, 4), chunk_sizes(2, 4)
    ([3, 3, 2, 2], [1, 1, 0, 0])
    """
    base, extra = divmod(numel, world)
    return [base + (c < extra) for c in range(world)]


def ring_all_reduce(tensor, group=None):
    """Sum ``tensor`` over the ranks of ``group`` (default: all), in place, with a ring of
    point-to-point messages. Returns ``tensor``.

    Each of the 2(p-1) steps is traced as a ``comm`` span, ``ring reduce-scatter k`` or
    ``ring all-gather k`` (k = 1 ... p-1), with the bytes this rank sent; outside a traced
    job the spans cost nothing. Any size works: chunks are uneven when the size does not
    divide by p, and some are empty when it has fewer than p elements. Every rank of the
    group must call it with a tensor of the same shape and dtype.

    >>> x = torch.ones(1001)          # doctest: +SKIP
    >>> ring_all_reduce(x)[0]         # on 4 ranks: tensor(4.)   # doctest: +SKIP
    """
    import torch.distributed as dist

    group, rank, world = members(group)
    if world == 1:
        return tensor
    right = dist.get_global_rank(group, (rank + 1) % world)   # send/recv take global ranks
    left = dist.get_global_rank(group, (rank - 1) % world)
    work = tensor if tensor.is_contiguous() else tensor.contiguous()
    chunks = list(work.view(-1).tensor_split(world))
    scratch = work.new_empty(chunks[0].numel())                # the first chunk is the largest
    for step in range(2 * (world - 1)):
        phase, send, recv = ring_schedule(rank, world, step)
        k = step + 1 if phase == REDUCE_SCATTER else step - world + 2
        out = chunks[send]
        into = scratch[: chunks[recv].numel()] if phase == REDUCE_SCATTER else chunks[recv]
        with span(f"ring {phase} {k}", cat="comm", bytes=out.numel() * out.element_size(),
                  chunk=send):
            _exchange(out, right, into, left, group)
        if phase == REDUCE_SCATTER:
            chunks[recv] += into
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def _exchange(out, right: int, into, left: int, group) -> None:
    """Send ``out`` right while receiving ``into`` from the left. Both are posted before
    either is waited on, so no rank blocks its neighbour; empty chunks are skipped (both
    sides know the chunk sizes)."""
    import torch.distributed as dist

    reqs = []
    if into.numel():
        reqs.append(dist.irecv(into, src=left, group=group))
    if out.numel():
        reqs.append(dist.isend(out, dst=right, group=group))
    for r in reqs:
        r.wait()


def members(group=None):
    """``(group, rank in it, its size)`` for ``group`` (default: every rank), or a clear error
    outside a job or on a rank that is not in the group. Every teaching implementation starts here.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        raise RuntimeError("no process group: run this inside a job (gpuviz.launch / torchrun) "
                           "after torch.distributed.init_process_group")
    group = group if group is not None else dist.group.WORLD
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(f"group: global rank {dist.get_rank()} is not a member of this group; "
                         "call it only on the group's ranks")
    return group, rank, dist.get_world_size(group)


# -- the same schedule in plain Python, for drawings and checks ---------------------------------

@dataclass(frozen=True)
class RingStep:
    """The ring after one step. ``state[r][c]``: the ranks whose contribution to chunk c
    rank r holds summed; ``sends``: ``(from, to, chunk, contents sent)`` for every rank."""

    step: int                  # 0 is the start, then 1 ... 2(p-1)
    phase: str                 # "start", "reduce-scatter" or "all-gather"
    index: int                 # step number within the phase, 1 ... p-1 (0 at the start)
    sends: tuple
    state: tuple


def simulate_ring(world: int) -> list[RingStep]:
    """Run :func:`ring_schedule` on sets of rank ids instead of tensors: the start and the
    state after each of the 2(world-1) steps. :func:`gpuviz.plot.ring.ring_allreduce` draws it.

    >>> final = simulate_ring(4)[-1].state
    >>> all(chunk == frozenset(range(4)) for rank in final for chunk in rank)
    True
    """
    if isinstance(world, bool) or not isinstance(world, int) or world < 2:
        raise ValueError(f"world={world!r}: a ring needs an integer number of ranks >= 2")
    state = [[frozenset({r}) for _ in range(world)] for r in range(world)]
    steps = [RingStep(0, "start", 0, (), tuple(map(tuple, state)))]
    for s in range(2 * (world - 1)):
        sends = []
        for r in range(world):
            phase, send, _ = ring_schedule(r, world, s)
            sends.append((r, (r + 1) % world, send, state[r][send]))
        new = [list(row) for row in state]
        for _, dst, c, contents in sends:
            assert ring_schedule(dst, world, s)[2] == c      # the receiver expects this chunk
            new[dst][c] = (new[dst][c] | contents) if phase == REDUCE_SCATTER else contents
        state = new
        index = s + 1 if phase == REDUCE_SCATTER else s - world + 2
        steps.append(RingStep(s + 1, phase, index, tuple(sends), tuple(map(tuple, state))))
    return steps
