"""The transformer a plan trains: its shape, parameter count, and named presets.

>>> t = transformer("llama3-70b")
>>> round(t.n_params / 1e9, 1)
70.6
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

#: What every figure and table says about these numbers.
MODELLED = "modelled (analytic estimate, not a measurement)"


def _positive_int(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name}={value!r}: must be an integer >= {least}")
    return int(value)


def _fraction(name: str, value, lo_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > 1 or value < 0 or (lo_open and value == 0):
        raise ValueError(f"{name}={value!r}: must be a number in {'(0' if lo_open else '[0'}, 1]")
    return float(value)


# -- the transformer --------------------------------------------------------------------------

@dataclass(frozen=True)
class Transformer:
    """A decoder-only transformer's sizes (every field an integer >= 1, checked)."""

    layers: int
    """Transformer blocks (L)."""
    hidden: int
    """Width of the residual stream (h, d_model); a multiple of ``heads``."""
    heads: int
    """Attention heads (a)."""
    seq: int
    """Tokens per sequence (s), the context length trained on."""
    vocab: int
    """Vocabulary size (V)."""
    kv_heads: int | None = None
    """Key/value heads (grouped-query attention); None: as many as ``heads``."""
    ffn: int | None = None
    """Hidden width of the MLP; None: 4 x hidden."""
    gated: bool = False
    """A gated MLP (SwiGLU: three matrices) instead of two."""
    tied: bool = True
    """Input embedding and output head share one matrix."""
    name: str = "custom"
    """What to call it."""
    source: str = ""
    """Where the sizes come from."""
    head_dim: int | None = None
    """Width of one attention head; None: ``hidden / heads`` (some models, Qwen3's among
    them, use wider heads: ``heads x head_dim`` then differs from ``hidden``)."""
    experts: int = 0
    """Routed experts in every layer's MLP (mixture of experts); 0: a dense MLP."""
    top_k: int = 1
    """Experts each token is routed to (with ``experts`` > 0)."""
    expert_ffn: int | None = None
    """Hidden width of one expert's MLP; None: ``ffn``."""
    shared_experts: int = 0
    """Experts every token goes through besides the routed ones (DeepSeek's shared experts)."""
    window: int | None = None
    """Tokens a banded (sliding-window) attention layer looks back over; None: none is banded."""
    windowed_layers: int = 0
    """How many of the layers attend within ``window`` only (gpt-oss: every other one); the
    others attend to the whole sequence."""

    def __post_init__(self):
        for k in ("layers", "hidden", "heads", "seq", "vocab"):
            _positive_int(k, getattr(self, k))
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.ffn is None:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        if self.expert_ffn is None:
            object.__setattr__(self, "expert_ffn", self.ffn)
        _positive_int("kv_heads", self.kv_heads)
        _positive_int("ffn", self.ffn)
        _positive_int("expert_ffn", self.expert_ffn)
        _positive_int("experts", self.experts, least=0)
        _positive_int("shared_experts", self.shared_experts, least=0)
        _positive_int("top_k", self.top_k)
        if self.experts and self.top_k > self.experts:
            raise ValueError(f"top_k={self.top_k} is more than the experts={self.experts}")
        if self.head_dim is None:
            if self.hidden % self.heads:
                raise ValueError(f"hidden={self.hidden} is not a multiple of heads={self.heads} "
                                 "(or give head_dim)")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        _positive_int("head_dim", self.head_dim)
        if self.window is not None:
            _positive_int("window", self.window)
        _positive_int("windowed_layers", self.windowed_layers, least=0)
        if self.windowed_layers > self.layers or (self.windowed_layers and self.window is None):
            raise ValueError(f"windowed_layers={self.windowed_layers}: must be at most layers="
                             f"{self.layers}, and needs a window")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")

    def spec(self) -> dict:
        return dataclasses.asdict(self)

    def _params(self, experts_used: int) -> int:
        h, d = self.hidden, self.head_dim
        attention = 2 * h * self.heads * d + 2 * h * self.kv_heads * d
        matrices = 3 if self.gated else 2
        mlp = (matrices * h * self.ffn if not self.experts else
               matrices * h * self.expert_ffn * (experts_used + self.shared_experts)
               + h * self.experts)                                 # + the router
        return self.layers * (attention + mlp + 4 * h) + self.vocab * h * (1 if self.tied else 2) + 2 * h

    @property
    def moe(self) -> bool:
        """Whether the MLPs are mixtures of experts."""
        return self.experts > 0

    @property
    def n_params(self) -> int:
        """Parameters (weights of every matmul, embeddings, LayerNorms; biases left out);
        with experts, all of them."""
        return self._params(self.experts)

    @property
    def routed_expert_params(self) -> int:
        """Weights of one layer's routed experts, all of them (0 for a dense MLP).

        >>> transformer("qwen3-30b-a3b").routed_expert_params    # 128 x 3 x 2048 x 768
        603979776
        """
        return self.experts * (3 if self.gated else 2) * self.hidden * self.expert_ffn

    @property
    def n_active_params(self) -> int:
        """Parameters one token passes through: with experts, its ``top_k`` routed ones and
        the shared ones (all of a dense model's).

        >>> round(transformer("qwen3-30b-a3b").n_active_params / 1e9, 2)
        3.35
        """
        return self._params(self.top_k)


_BROWN = "Brown et al. 2020, 'Language Models are Few-Shot Learners', arXiv:2005.14165, Table 2.1"
_DUBEY = "Dubey et al. 2024, 'The Llama 3 Herd of Models', arXiv:2407.21783, Table 3"
_QWEN = ("Qwen Team 2025, 'Qwen3 Technical Report', arXiv:2505.09388, Table 2 (layers, heads, "
         "experts); hidden size, head width, expert width and vocabulary from the config.json of "
         "Qwen/Qwen3-30B-A3B and Qwen/Qwen3-235B-A22B on Hugging Face; sequence 4096 as in the "
         "Megatron-Bridge benchmarks (gpuviz.plan.published)")
_OSS = ("OpenAI 2025, 'gpt-oss-120b & gpt-oss-20b Model Card', arXiv:2508.10925 (36 layers of "
        "width 2880, 128 experts of which 4 per token, grouped-query attention with 8 key-value "
        "heads, alternating between a 128-token band and the whole sequence; 116.8B parameters, "
        "which these sizes give); 64 heads of width 64, expert width 2880, vocabulary 201,088 "
        "and untied embeddings from the config.json of openai/gpt-oss-120b on Hugging Face; "
        "biases left out; sequence 4096 as in the Megatron-Bridge benchmarks "
        "(gpuviz.plan.published)")
#: Named models with the source of their sizes.
PRESETS = {t.name: t for t in (
    Transformer(96, 12288, 96, 2048, 50257, name="gpt3-175b",
                source=_BROWN + "; vocabulary 50,257: GPT-2's BPE (Radford et al. 2019)"),
    Transformer(32, 4096, 32, 8192, 128000, 8, 14336, True, False, "llama3-8b", _DUBEY),
    Transformer(80, 8192, 64, 8192, 128000, 8, 28672, True, False, "llama3-70b", _DUBEY),
    Transformer(126, 16384, 128, 8192, 128000, 8, 53248, True, False, "llama3-405b", _DUBEY),
    Transformer(105, 20480, 128, 2048, 50257, name="mt-nlg-530b",
                source="Smith et al. 2022, 'Using DeepSpeed and Megatron to Train Megatron-Turing "
                       "NLG 530B', arXiv:2201.11990, Section 3.1 (105 layers, hidden 20480, 128 "
                       "heads, sequence 2048; GPT-2's BPE vocabulary)"),
    Transformer(70, 14336, 112, 2048, 250680, name="bloom-176b",
                source="Le Scao et al. 2022, 'BLOOM: A 176B-Parameter Open-Access Multilingual "
                       "Language Model', arXiv:2211.05100 (70 layers, hidden 14336, 112 heads, "
                       "sequence 2048, vocabulary 250,680)"),
    Transformer(128, 25600, 160, 2048, 51200, name="megatron-1t",
                source="Narayanan et al. 2021, 'Efficient Large-Scale Language Model Training on "
                       "GPU Clusters Using Megatron-LM', SC21, arXiv:2104.04473, Table 1 (1 T row); "
                       "vocabulary 51,200 and sequence 2048 for every model of the table"),
    Transformer(48, 2048, 32, 4096, 151936, 4, 6144, True, False, "qwen3-30b-a3b", _QWEN,
                head_dim=128, experts=128, top_k=8, expert_ffn=768),
    Transformer(94, 4096, 64, 4096, 151936, 4, 12288, True, False, "qwen3-235b-a22b", _QWEN,
                head_dim=128, experts=128, top_k=8, expert_ffn=1536),
    Transformer(36, 2880, 64, 4096, 201088, 8, 2880, True, False, "gpt-oss-120b", _OSS,
                head_dim=64, experts=128, top_k=4, window=128, windowed_layers=18),
    Transformer(4, 128, 4, 64, 256, ffn=512, tied=False, name="gpuviz-gpt",
                source="gpuviz.workloads.gpt.GPTConfig() defaults: the model the labs train"),
)}


def transformer(model) -> Transformer:
    """A :class:`Transformer` from a preset name, a Transformer, or a dict of its fields.

    >>> round(transformer("gpt3-175b").n_params / 1e9, 1)
    174.6
    """
    if isinstance(model, Transformer):
        return model
    if isinstance(model, str):
        if model not in PRESETS:
            raise ValueError(f"model={model!r} is not a preset; known: "
                             + ", ".join(map(repr, PRESETS)) + " (or give a Transformer)")
        return PRESETS[model]
    if isinstance(model, dict):
        return Transformer(**model)
    raise ValueError(f"model={model!r}: give a preset name ({', '.join(PRESETS)}), a "
                     "Transformer or a dict of its fields")
