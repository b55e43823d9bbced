"""Solutions to Lab 05's exercises (try them yourself first)."""

from gpuviz.plan import Config, predict, transformer

#: Section 1: 6N FLOPs per token x 128 x 8192 tokens, over 64 GPUs at about half of the
#: H100's 989 TFLOP/s dense bf16 peak: about 14 s (the model says a little more: it adds the
#: attention's FLOPs, the recomputation and the tensor-parallel all-reduces).
my_step_guess_s = 6 * transformer("llama3-70b").n_params * 128 * 8192 / (64 * 989e12 * 0.5)
#: Section 1: 16 bytes per parameter / 8 tensor ranks is 141 GB of model state: no.
my_fits_guess = False


def memory_gb(config):
    """Memory per GPU by hand, for a layout without pipeline parallelism: the model state
    (2 + 2 + 12 bytes per parameter of the 1/tp of the model on each GPU, divided by dp for
    what the ZeRO stage shards) plus the activations of one micro-batch (34 s b h bytes per
    layer / tp with selective recomputation, 2 s b h / tp with full; Korthikanti et al. 2022)
    and the fp32 logits (4 s b V / tp)."""
    c, m = config, config.model
    n = m.n_params / c.tp
    state = n * (2 / (c.dp if c.zero >= 3 else 1) + 2 / (c.dp if c.zero >= 2 else 1)
                 + 12 / (c.dp if c.zero >= 1 else 1))
    per_layer = {"selective": 34, "full": 2}[c.recompute] * m.seq * c.micro_batch * m.hidden / c.tp
    logits = 4 * m.seq * c.micro_batch * m.vocab / c.tp
    return (state + m.layers * per_layer + logits) / 1e9


def fits(config):
    """Exercise 1: compare the hand count with the GPU's 80 GB."""
    return memory_gb(config) <= 80


def mfu(tokens_per_s, n_params, gpus, peak_flops):
    """Exercise 2: the model's FLOPs per second (6N per token) over every GPU's peak."""
    return 6 * n_params * tokens_per_s / (gpus * peak_flops)


#: Exercise 3: 16 stages and only 64 / 8 = 8 micro-batches per replica: each stage idles
#: (p-1)/(m+p-1) = 15/23 of the schedule, more than it computes.
dominant = "bubble"


def best_layout(model="llama3-70b", gpus=64, global_batch=128):
    """Exercise 4: try every (dp, tp, pp) with tp inside a server, every ZeRO stage and
    recomputation, micro-batch 1; keep the fastest that fits. (gpuviz.plan.search.search
    does the same for every micro-batch too, with numpy, in milliseconds.)"""
    best = None
    for tp in (1, 2, 4, 8):
        for pp in (1, 2, 4, 8, 16):
            dp = gpus // (tp * pp)
            if dp * tp * pp != gpus:
                continue
            for zero in (0, 1, 2, 3):
                for recompute in ("none", "selective", "full"):
                    try:
                        p = predict(Config(model, gpus=gpus, dp=dp, tp=tp, pp=pp, zero=zero,
                                           global_batch=global_batch, recompute=recompute))
                    except ValueError:          # the batch does not split over dp, ...
                        continue
                    if p.fits and (best is None or p.tokens_per_s > best[0]):
                        best = (p.tokens_per_s, {"dp": dp, "tp": tp, "pp": pp, "zero": zero,
                                                 "recompute": recompute})
    return best[1]


def expert_gib(config):
    """Exercise 5: the routed experts of the ceil(layers / pp) layers of this GPU's pipeline
    stage, experts / ep of them per layer, each whole (three matrices of hidden x expert_ffn
    when gated), two bytes per bf16 weight, in GiB."""
    import math

    m = config.model
    per_expert = (3 if m.gated else 2) * m.hidden * m.expert_ffn
    return math.ceil(m.layers / config.pp) * m.experts / config.ep * per_expert * 2 / 2**30
