"""The cluster model's arithmetic: every term of one training step, vectorised with numpy.

One function, :func:`step_terms`, computes the time, memory and FLOPs of a training step
for one layout or for arrays of layouts at once (``dp``, ``tp``, ``pp``, ``micro_batch``,
``zero``, ``recompute`` may be numpy arrays of one shape), so :func:`gpuviz.plan.prediction.predict`
(one layout) and :func:`gpuviz.plan.search.search` (thousands) share every formula.
Everything here is modelled, not measured. The formulas and where they come from:

- FLOPs per token: forward ``2 x`` (weights of each matmul) ``+ 4 s h`` per layer for
  the attention scores and their weighted sum (``s``: the window, in a banded layer),
  ``+ 2 V h`` for the logits; training is
  3 forward passes' worth (Kaplan et al. 2020, "Scaling Laws for Neural Language Models",
  C = 6N; Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
  Clusters", SC21, eq. 3, which adds the attention term and, with full recomputation,
  a fourth forward pass of the layers).
- Memory: model state per ZeRO stage (Rajbhandari et al. 2020, "ZeRO", Figure 1);
  activations per layer ``s b h (34 / t + 5 a s / (h t))`` bytes with tensor and sequence
  parallelism, ``34 s b h / t`` with selective recomputation and ``2 s b h / t`` with full
  recomputation (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models", Table 2), for 16-bit activations; FlashAttention (Dao et al. 2022)
  stores no scores, so it drops the ``5 a s`` term; context parallelism divides the
  tokens of a sequence over ``c`` GPUs; 1F1B keeps ``min(m, p)`` micro-batches in flight
  on the first stage, GPipe all ``m``.
- Work that is not a matmul: the reads and writes of LayerNorm, dropout, residual adds,
  the activation and (without FlashAttention) the attention scores, counted per token
  (:data:`ELEMENTWISE_H`, :data:`SCORES_AS`), at a fraction of the memory bandwidth.
- Communication: ring all-reduce ``2 (k-1) alpha + 2 (k-1)/k n / B`` (Thakur et al.
  2005) with NCCL's latencies (its cost model: a base per collective, a latency per ring
  step over NVLink or the network); the tensor- and data-parallel all-reduces striped
  over every NIC of a server (a ring inside each server, then a ring between servers over
  each GPU's own NIC carrying ``n / k``); ZeRO-3 gathers flat, each GPU over its own
  link; tensor parallelism: 2 all-reduces of the layer's activations forward and 2
  backward per layer (Shoeybi et al. 2019, Megatron-LM), 2 more with full recomputation;
  pipeline: one send forward and one backward per micro-batch, split over the ``t``
  tensor ranks (Narayanan et al. 2021, scatter/gather); ZeRO-3 gathers the parameters
  forward and backward and reduce-scatters the gradients for every micro-batch; context
  parallelism passes keys and values round the ``c`` ranks (ring attention).
- Pipeline bubble ``(p-1)/v`` micro-batch times out of ``m + (p-1)/v`` (GPipe, Huang et
  al. 2019; the interleaved schedule's ``v`` virtual stages, Narayanan et al. 2021).
- Mixture of experts: a token passes through its ``top_k`` routed experts (and any shared
  ones); the ``ep`` expert-parallel ranks each hold ``experts / ep`` of them, and every
  MoE layer sends each token's copies to their experts and back with an all-to-all,
  forward and backward (GShard, Lepikhin et al. 2021; Megatron-Core's MoE layer), not
  overlapped unless ``ep_overlap`` (Megatron-Core's ``overlap_moe_expert_parallel_comm``
  pairs one micro-batch's forward with another's backward, so each one's all-to-alls run
  during the other's compute); expert gradients are reduced over the ranks that hold the
  same experts.
- FP8: the weights' matmuls at the FP8 peak, the attention's products (FlashAttention)
  at the 16-bit peak.
- Overlap: a fraction ``overlap`` of the backward pass of the last micro-batch hides
  the data-parallel gradient reduction; of each micro-batch's compute, ZeRO-3's gathers
  and (with ``ep_overlap``) another micro-batch's all-to-alls; of the attention's compute,
  context parallelism's ring.
"""

from __future__ import annotations

import numpy as np

#: Bytes per parameter of (weights, gradients, optimizer state) and per activation value.
#: bf16: mixed precision Adam as in ZeRO's Figure 1 (16-bit weights and gradients; fp32
#: master weights and two moments, 12 bytes); fp8: the same plus an FP8 copy of the weights
#: for the matmuls (Transformer Engine's recipe, activations kept in 16 bits: an
#: assumption); fp32: our CPU strategies' float32 Adam.
PRECISIONS = {"bf16": (2, 2, 12, 2), "fp8": (3, 2, 12, 2), "fp32": (4, 4, 8, 4)}
RECOMPUTE = ("none", "selective", "full")
#: The terms of a step, in the order the breakdown stacks them; they add up to step_s.
TIME_TERMS = ("compute", "tp_comm", "pp_comm", "zero3_comm", "ep_comm", "bubble", "dp_comm",
              "optimizer", "overhead")


def ring_time(nbytes, k, bytes_per_s, alpha, messages=1, steps_factor=2.0):
    """Ring collective over ``k`` ranks: ``steps_factor (k-1)`` steps of ``n/k`` bytes
    each (2 for all-reduce, 1 for all-gather or reduce-scatter), ``messages`` of them
    sharing the bytes (each pays its own latency)."""
    k = np.asarray(k, dtype=float)
    frac = np.where(k > 1, (k - 1) / np.maximum(k, 1), 0.0)
    return steps_factor * (frac * nbytes / bytes_per_s + (k - 1) * alpha * messages)


def _spread(ranks, local):
    """Ranks, ranks per server and servers of a collective (arrays)."""
    ranks = np.asarray(ranks, dtype=float)
    local = np.minimum(local, ranks)
    return ranks, local, ranks / local


def _latency(ranks, nodes, hw, steps_factor, messages):
    """NCCL's latency of a ring collective: a base per collective, ``ranks - servers`` steps
    inside servers and ``servers - 1`` between them (times ``steps_factor``), per message."""
    steps = (ranks - nodes) * hw["intra_latency_s"] + (nodes - 1) * hw["inter_latency_s"]
    return np.where(ranks > 1, messages * (hw.get("collective_latency_s", 0.0) + steps_factor * steps),
                    0.0)


def hierarchical_time(nbytes, ranks, local, hw, steps_factor=2.0, messages=1):
    """A ring collective over ``ranks`` members, ``local`` of them in each server, as NCCL
    runs it: its rings stripe the data over every NIC of a server, so the bytes cross the
    network at the server's whole bandwidth (a ring inside the server on the full size,
    then one between servers on ``n / local`` over each GPU's own NIC); the latency is
    NCCL's: ``ranks - servers`` steps inside servers, ``servers - 1`` between them, and a
    base latency per collective (``hw["collective_latency_s"]``)."""
    ranks, local, nodes = _spread(ranks, local)
    inside = ring_time(nbytes, local, hw["intra_bytes_per_s"], 0.0, messages, steps_factor)
    between = ring_time(nbytes / local, nodes, hw["inter_bytes_per_s"], 0.0, messages, steps_factor)
    return inside + between + _latency(ranks, nodes, hw, steps_factor, messages)


def flat_time(nbytes, ranks, local, hw, steps_factor=1.0, messages=1):
    """A ring collective over ``ranks`` members whose every GPU sends its share over its
    own link: NVLink inside one server, its own NIC port once the ring spans servers (no
    striping over the server's other NICs). How the sharded data-parallel frameworks'
    per-layer gathers behave in published runs (:mod:`gpuviz.plan.published`: ZeRO-3 in
    Narayanan et al. 2021, Table 2)."""
    ranks, local, nodes = _spread(ranks, local)
    bw = np.where(nodes > 1, hw["inter_bytes_per_s"], hw["intra_bytes_per_s"])
    return ring_time(nbytes, ranks, bw, 0.0, messages, steps_factor) + _latency(
        ranks, nodes, hw, steps_factor, messages)


def all_to_all_time(nbytes, ranks, local, hw):
    """An all-to-all over ``ranks`` members, ``local`` of them in each server: each GPU
    keeps ``1/ranks`` of its ``nbytes`` and sends the rest straight to each peer, NVLink
    to those in its server and its own NIC to the others, both at once (NCCL's
    send/receive pairs); one latency, the slower link's, plus NCCL's base."""
    ranks, local, nodes = _spread(ranks, local)
    inside = nbytes * (local - 1) / ranks / hw["intra_bytes_per_s"]
    between = nbytes * (ranks - local) / ranks / hw["inter_bytes_per_s"]
    lat = (np.where(nodes > 1, hw["inter_latency_s"], hw["intra_latency_s"])
           + hw.get("collective_latency_s", 0.0))
    return np.where(ranks > 1, np.maximum(inside, between) + lat, 0.0)


def _experts(spec, h, f, tp, cp, dp, ep, gpus_per_node) -> dict:
    """A layer's MLP, dense or a mixture of experts (GShard, Lepikhin et al. 2021; Switch
    Transformers, Fedus et al. 2022): weights split over tp (``p_mlp_dense``) and over ep
    (``p_experts``), the weights one token uses (``p_mlp_active``), memory-bound values per
    token (``ew_mlp``), the change to Korthikanti's 16 bytes per token and h of MLP
    activations split over tp (``act_delta``), routed copies per token (``copies``) and the
    expert-data-parallel group (``edp`` ranks, ``edp_local`` per server). Experts are laid
    out as Megatron-Core's parallel folding does (Liu et al. 2025, arXiv:2504.14960): the
    ``ep`` ranks are consecutive among a pipeline stage's ``tp x cp x dp`` and each holds
    ``experts / ep`` whole experts; tokens are routed evenly (balanced, as the published
    benchmarks force it). A routed copy stores its input, the activation's input(s) and the
    second matmul's input; the memory-bound kernels move the activation and permute each
    copy there and back (read and write: ``4 h``)."""
    matrices, acts = (3, 2) if spec["gated"] else (2, 1)
    E, k = spec.get("experts", 0), spec.get("top_k", 1)
    if not E:
        return {"p_mlp_dense": matrices * h * f, "p_experts": 0.0, "p_mlp_active": matrices * h * f,
                "ew_mlp": (acts + 1) * f, "act_delta": 0.0, "copies": 0, "edp": dp * cp,
                "edp_local": 1.0}
    fe, shared = spec.get("expert_ffn") or f, spec.get("shared_experts", 0)
    expert = matrices * h * fe
    used = k + shared
    edp = tp * cp * dp / ep
    return {"p_mlp_dense": shared * expert + h * E, "p_experts": E * expert,
            "p_mlp_active": used * expert + h * E,
            "ew_mlp": used * (acts + 1) * fe + 4 * k * h,
            "act_delta": used * (2 + (2 * acts + 2) * fe / h) - 16, "copies": k, "edp": edp,
            "edp_local": np.maximum(1.0, np.minimum(edp, np.floor(gpus_per_node / np.minimum(ep, gpus_per_node))))}


#: Reads and writes of the memory-bound kernels of one layer, in values per token, in
#: the forward pass (the backward pass makes twice as many): LayerNorm twice (read and
#: write h each), bias-dropout-add twice (read 2h, write h, a one-byte mask h/2: 3.5h
#: each), the MLP's activation on its ffn-wide input (read and write; a gated MLP reads
#: two); the first three are ``ELEMENTWISE_H`` values per h, the activation is counted
#: from the ffn width. Materialised attention (no FlashAttention) also writes the score
#: matrix, reads and writes it in the fused scale-mask-softmax, reads, writes and masks it
#: in dropout and reads it in the product with V: ``SCORES_AS`` values per head and key
#: (a s per token). Our count (an estimate, not a measurement) of Megatron-LM's fused
#: kernels (Narayanan et al. 2021, Section 4.2: fused bias+GeLU, bias+dropout+add,
#: scale+mask+softmax); the fitted memory efficiency absorbs what it misses.
ELEMENTWISE_H = 11.0
SCORES_AS = 6.5


def step_terms(spec, hw, *, dp, tp, pp, micro_batch, global_batch, zero, recompute,
               precision="bf16", gpus_per_node=8, virtual_stages=1, schedule="1f1b",
               bucket_bytes=25 * 2**20, overlap=1.0, compute_efficiency=1.0,
               overhead_s=0.0, sequence_parallel=True, launch_s=0.0,
               data_s_per_sequence=0.0, sync_s=0.0, cp=1, attention="flash",
               memory_efficiency=None, gemm_flops=None, ep=1, ep_overlap=False) -> dict:
    """Every modelled term of one training step (seconds, bytes, FLOPs) per GPU.

    ``spec``: the transformer (dict with layers, hidden, heads, kv_heads, ffn, gated,
    seq, vocab, tied); ``hw``: peak_flops, memory_bytes, memory_bytes_per_s, tdp_w,
    intra/inter ``_bytes_per_s`` and ``_latency_s`` (already times any bandwidth
    efficiency), ``collective_latency_s``, ``cores`` (compute slots per server: fewer than
    ``gpus_per_node`` means ranks share them, as CPU processes do). ``recompute``: an
    index into :data:`RECOMPUTE` (array) or its name. ``cp``: context-parallel ranks (the
    sequence split over them). ``attention``: "flash" (scores never stored) or
    "materialised". ``memory_efficiency``: fraction of the memory bandwidth the
    memory-bound kernels reach (None: their time is left out). ``gemm_flops``: peak
    FLOP/s of the weights' matmuls (FP8's where the run uses it; default ``hw["peak_flops"]``);
    the attention's own products run at ``hw["peak_flops"]``. ``ep``: expert-parallel ranks
    of a mixture of experts (see :func:`_experts`); ``ep_overlap``: their all-to-alls hidden,
    as far as ``overlap`` allows, behind another micro-batch's compute.
    """
    L, h, a = spec["layers"], spec["hidden"], spec["heads"]
    d = spec.get("head_dim") or h // a
    kv_dim, q_dim = spec["kv_heads"] * d, a * d
    s, V, f = spec["seq"], spec["vocab"], spec["ffn"]
    pb, gb, ob, ab = PRECISIONS[precision]
    dp, tp, pp, cp, ep = (np.asarray(x, dtype=float) for x in (dp, tp, pp, cp, ep))
    b = np.asarray(micro_batch, dtype=float)
    zero = np.asarray(zero)
    rc = np.asarray(RECOMPUTE.index(recompute) if isinstance(recompute, str) else recompute)
    m = global_batch / (dp * b)                       # micro-batches per step per replica
    flash = attention == "flash"

    # parameters and FLOPs (per token); a mixture of experts counts the experts a token uses
    moe = _experts(spec, h, f, tp, cp, dp, ep, gpus_per_node)
    p_attn = 2 * h * q_dim + 2 * h * kv_dim
    p_dense = p_attn + moe["p_mlp_dense"] + 4 * h     # split over tp (+ two LayerNorms)
    p_layer = p_dense + moe["p_experts"]               # every weight of a layer
    p_embed = V * h
    n_params = L * p_layer + p_embed * (1 if spec["tied"] else 2) + 2 * h
    # the attention's QK^T and AV, forward: each query meets s keys (a banded layer: the window)
    banded = spec.get("windowed_layers", 0)
    keys = (s * (L - banded) + min(spec.get("window") or s, s) * banded) / L
    f_scores = 4 * keys * q_dim
    f_weights = 2 * (p_attn + moe["p_mlp_active"])
    f_layer = f_weights + f_scores                    # forward, per token
    f_logits = 2 * V * h
    model_flops_token = 3 * (L * f_layer + f_logits)
    extra = np.where(rc == 2, f_layer, np.where(rc == 1, f_scores, 0.0))   # recomputed, per layer
    hw_flops_token = model_flops_token + L * extra

    # the busiest pipeline stage: ceil(L/p) layers, plus the logits when it is the last
    layers_stage = np.ceil(L / pp)
    # ranks sharing fewer cores (CPU processes) run slower; in a pipeline only the busy
    # fraction m / (m + (p-1)/v) of the stages competes for them
    busy = np.where(pp > 1, m / (m + (pp - 1) / virtual_stages), 1.0)
    share = np.maximum(1.0, gpus_per_node * busy / hw["cores"])
    rate = (gemm_flops or hw["peak_flops"]) * compute_efficiency / share
    rate_scores = hw["peak_flops"] * compute_efficiency / share   # FlashAttention: 16-bit
    scores_token = layers_stage * (3 * f_scores + np.where(rc >= 1, f_scores, 0.0))
    weights_token = layers_stage * (3 * f_layer + extra) + 3 * f_logits - scores_token
    tokens_mb = b * s / cp                             # tokens of one micro-batch on this GPU
    # plus a fixed cost per layer and micro-batch (kernel launches, Python dispatch)
    t_compute_mb = (tokens_mb / tp * (weights_token / rate + scores_token / rate_scores)
                    + 3 * layers_stage * launch_s * share)
    # memory-bound kernels (LayerNorm, dropout, residual adds, activation; the attention
    # scores when they are materialised): values moved per token, forward 1 + backward 2
    # (+1 forward again with full recomputation; selective recomputes the scores)
    passes = np.where(rc == 2, 4.0, 3.0)
    ew_rep = ELEMENTWISE_H * h                         # replicated over tp without sequence parallelism
    ew_split = moe["ew_mlp"]                           # the activation, split over tp
    ew = (ew_rep / tp if sequence_parallel else ew_rep) + ew_split / tp
    scores = 0.0 if flash else SCORES_AS * a * s / tp * np.where(rc >= 1, 4.0, 3.0)
    mem_values_mb = tokens_mb * layers_stage * (ew * passes + scores)
    t_memory_mb = (mem_values_mb * ab / (hw["memory_bytes_per_s"] * memory_efficiency) * share
                   if memory_efficiency else 0.0 * mem_values_mb)
    t_compute_mb = t_compute_mb + t_memory_mb

    # tensor parallelism: all-reduces of b s h activations, per layer
    act_bytes = tokens_mb * h * ab
    n_ar = np.where(rc == 2, 6, 4)
    tp_local = np.minimum(tp, gpus_per_node)
    t_tp_mb = np.where(tp > 1, layers_stage * n_ar * hierarchical_time(act_bytes, tp, tp_local, hw),
                       0.0) * share

    # context parallelism (ring attention): each rank's keys and values go round the cp
    # ranks forward, and their gradients backward (twice the bytes), hidden behind the
    # attention's own compute where it is longer
    cp_local = np.maximum(1.0, np.minimum(cp, np.floor(gpus_per_node / np.minimum(tp, gpus_per_node))))
    kv_bytes = tokens_mb * 2 * kv_dim / tp * ab
    t_cp_raw = np.where(cp > 1, layers_stage * 3 * flat_time(kv_bytes * cp, cp, cp_local, hw, 1.0),
                        0.0) * share
    attn_compute = tokens_mb * layers_stage * 3 * f_scores / tp / rate_scores
    t_cp_mb = np.maximum(0.0, t_cp_raw - overlap * attn_compute)

    # expert parallelism: each GPU's tokens go to their experts and come back (dispatch and
    # combine, an all-to-all each), forward and backward (and forward again with full
    # recomputation); not overlapped with compute (Megatron-Core's default) unless ep_overlap
    n_a2a = np.where(rc == 2, 6, 4)
    a2a_bytes = tokens_mb / tp * moe["copies"] * h * ab
    t_ep_raw = np.where(ep > 1, layers_stage * n_a2a * all_to_all_time(
        a2a_bytes, ep, np.minimum(ep, gpus_per_node), hw), 0.0) * share
    t_ep_mb = np.maximum(0.0, t_ep_raw - overlap * t_compute_mb) if ep_overlap else t_ep_raw

    # pipeline: one send forward, one backward per micro-batch, split over the tp ranks
    crosses = tp * cp * dp >= gpus_per_node
    p2p_bw = np.where(crosses, hw["inter_bytes_per_s"], hw["intra_bytes_per_s"])
    p2p_lat = np.where(crosses, hw["inter_latency_s"], hw["intra_latency_s"])
    t_pp_mb = np.where(pp > 1, 2 * virtual_stages * (p2p_lat + act_bytes / tp / p2p_bw), 0.0) * share

    # data parallelism: dp peers sit tp x cp ranks apart (Megatron's order); the gradients
    # are reduced over dp x cp ranks (context-parallel ranks hold the same weights)
    # (experts: over the tp x cp x dp / ep ranks that hold the same experts)
    stage_dense = (layers_stage * p_dense + p_embed * np.where((pp == 1) & (not spec["tied"]), 2, 1)) / tp
    stage_experts = layers_stage * moe["p_experts"] / ep
    grad_ranks = dp * cp
    dp_local = np.maximum(1.0, np.minimum(grad_ranks, np.floor(gpus_per_node / np.minimum(tp, gpus_per_node))))
    groups = ((stage_dense, grad_ranks, dp_local), (stage_experts, moe["edp"], moe["edp_local"]))
    units = layers_stage + 1                          # ZeRO-3 gathers layer by layer
    z3 = zero == 3
    # ZeRO-3: each micro-batch gathers the weights forward and backward and reduce-scatters
    # the gradients, each GPU over its own link, prefetched behind the micro-batch's compute
    t_z3_mb = sum(np.where(z3 & (ranks > 1) & (n > 0), share * (
        2 * flat_time(n * pb, ranks, local, hw, 1.0, units)
        + flat_time(n * gb, ranks, local, hw, 1.0, units)), 0.0) for n, ranks, local in groups)
    exposed_z3_mb = np.maximum(0.0, t_z3_mb - overlap * t_compute_mb)
    t_dp = sum(np.where(~z3 & (ranks > 1) & (n > 0), share * hierarchical_time(
        n * gb, ranks, local, hw, 2.0, np.maximum(1.0, np.ceil(n * gb / bucket_bytes))), 0.0)
        for n, ranks, local in groups)
    # the reduction starts with the last micro-batch's backward: only what is left of it hides it
    backward_window = t_compute_mb * 2 / 3
    exposed_dp = np.maximum(0.0, t_dp - overlap * backward_window)

    # the pipeline schedule
    t_mb = t_compute_mb + t_tp_mb + t_cp_mb + t_pp_mb + exposed_z3_mb + t_ep_mb
    bubble = np.where(pp > 1, (pp - 1) / virtual_stages * t_mb, 0.0)

    # optimizer: a memory-bound pass over this GPU's shard of the model state
    opt_params = sum(n / np.where(zero >= 1, ranks, 1.0) for n, ranks, _ in groups)
    t_opt = opt_params * (2 * (pb + ob) + gb) / hw["memory_bytes_per_s"] * share
    # a job of more than one GPU also ends each step together (the slowest GPU, the loss)
    sync = np.where(dp * tp * pp * cp > 1, sync_s, 0.0)
    overhead = (overhead_s + sync + data_s_per_sequence * global_batch) * share + 0 * t_opt

    terms = {"compute": m * t_compute_mb, "tp_comm": m * (t_tp_mb + t_cp_mb), "pp_comm": m * t_pp_mb,
             "zero3_comm": m * exposed_z3_mb, "ep_comm": m * t_ep_mb, "bubble": bubble, "dp_comm": exposed_dp,
             "optimizer": t_opt, "overhead": overhead}
    step = sum(terms[k] for k in TIME_TERMS)

    # memory per GPU (the busiest stage)
    def sharded(nbytes, stage):
        return sum(n * nbytes / np.where(zero >= stage, ranks, 1.0) for n, ranks, _ in groups)
    mem_params, mem_grads, mem_optim = sharded(pb, 3), sharded(gb, 2), sharded(ob, 1)
    base = 34 / tp if sequence_parallel else 10 + 24 / tp       # bytes / (s b h), 16-bit
    full = 2 / tp if sequence_parallel else 2.0
    score_term = 0.0 if flash else 5 * a * s / (h * tp)          # FlashAttention never stores them
    base = base + moe["act_delta"] / tp                          # a mixture of experts' copies
    per_layer = tokens_mb * h * (ab / 2) * np.where(
        rc == 2, full, np.where(rc == 1, base, base + score_term))
    in_flight = np.where(pp > 1, np.minimum(m, pp) if schedule == "1f1b" else m, 1.0)
    logits = np.where(pp == 1, 4 * tokens_mb * V / tp, 0.0)
    mem_act = layers_stage * per_layer * in_flight + logits
    mem_buffers = np.where(z3, 2 * (p_dense / tp + moe["p_experts"] / ep) * pb, 0.0) + np.where(cp > 1, 2 * kv_bytes, 0.0)

    tokens = global_batch * s
    gpus = dp * tp * pp * cp
    return {**terms, "step_s": step, "micro_batches": m, "n_params": n_params,
            "model_flops_per_token": model_flops_token, "hw_flops_per_token": hw_flops_token,
            "tokens": tokens, "tokens_per_s": tokens / step,
            "tokens_per_s_per_gpu": tokens / step / gpus,
            "tflops_per_gpu": hw_flops_token * tokens / step / gpus / 1e12,
            "mfu": model_flops_token * tokens / step / gpus / hw["peak_flops"],
            "mem_params": mem_params, "mem_grads": mem_grads, "mem_optimizer": mem_optim,
            "mem_activations": mem_act, "mem_buffers": mem_buffers,
            "memory_bytes": mem_params + mem_grads + mem_optim + mem_act + mem_buffers,
            "energy_j": gpus * hw["tdp_w"] * step, "dp_comm_total": t_dp,
            "zero3_comm_total": m * t_z3_mb, "memory_bound_s": m * t_memory_mb,
            "cp_comm_total": m * t_cp_raw, "ep_comm_total": m * t_ep_raw}
