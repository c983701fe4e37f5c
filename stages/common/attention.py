"""Attention kernels for generation with the transformers backend (params ``evaluate.attention``).

``grouped`` is transformers' eager attention (the same matmuls, fp32 softmax and masks, so the same numbers to the
bit) without its one cost: eager copies every key/value head once per query head it serves (``repeat_kv``;
grouped-query attention, Gemma-3-270M: 4 query heads share 1). Here the query heads of a group are stacked as extra
query rows against their one key/value head instead. SDPA, the default, is no better on CPU: its flash kernel is
built for long queries and took 71% of a decode step. On 2 CPU cores, bf16, Gemma-3-270M, 32 rows of 600-token
prompts: a decode step 420 ms (SDPA) / 390 ms (eager) -> 186 ms, a prefill of 8 x 600 tokens 6.5 s (SDPA) -> 4.5 s
(docs/training-and-cost.md "Grouped-query attention as plain matmuls"). On CUDA, SDPA's fused kernels are the
right choice (the runpod profile). Training keeps SDPA (axolotl YAML): there it made no difference.
"""

from __future__ import annotations

from .errors import UserError

GROUPED = "grouped"
ATTENTION_KERNELS = ("sdpa", "eager", GROUPED)


def grouped_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kwargs):
    """Eager attention for query (batch, heads, q_len, dim) over key/value (batch, kv_heads, kv_len, dim), with
    each key/value head read in place by the ``heads // kv_heads`` query heads that share it. Returns
    (batch, q_len, heads, dim) and no weights, as the attention interface expects."""
    import torch

    if kwargs.get("s_aux") is not None:  # eager's numbers are the contract: a term eager would add must not be lost
        raise UserError(
            "evaluate.attention: grouped has no attention sinks (s_aux), which this model uses; use sdpa or eager"
        )
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if scaling is None:
        scaling = module.head_dim**-0.5
    # repeat_kv gives query head h the key/value head h // groups: the same heads are stacked here.
    scores = torch.matmul(query.reshape(batch, kv_heads, groups * q_len, dim), key.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:  # (batch, 1, q_len, kv_len), additive: the same for every head of a group
        scores = (scores.view(batch, kv_heads, groups, q_len, -1) + attention_mask[:, :, None]).flatten(2, 3)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).view(batch, heads, q_len, dim)
    return output.transpose(1, 2).contiguous(), None


def attn_implementation(kernel: str) -> str:
    """The ``attn_implementation`` name to load a model with; ``grouped`` is registered with transformers first
    (with eager's additive masks, which it adds as eager does)."""
    if kernel not in ATTENTION_KERNELS:
        raise UserError(f"params: evaluate.attention must be one of {', '.join(ATTENTION_KERNELS)}, got {kernel!r}")
    if kernel == GROUPED:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(GROUPED, grouped_attention)
        AttentionMaskInterface.register(GROUPED, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    return kernel
