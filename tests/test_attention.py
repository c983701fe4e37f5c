"""stages/common/attention.py: the grouped kernel gives eager attention's numbers, and bad names are params errors."""

from __future__ import annotations

import pytest

from stages.common import attention as A
from stages.common import generation as G
from stages.common.errors import UserError


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_grouped_attention_gives_eager_logits_to_the_bit(tiny_model_dir, dtype):
    """The tiny model has 2 query heads on 1 key/value head and a 64-token sliding window on its first layer: rows
    of 90 tokens, one left-padded, cross the window, so the padding, causal and sliding masks all take part."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    input_ids = torch.randint(5, 60, (2, 90))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :17] = 0
    logits = {}
    for kernel in ("eager", "grouped", "sdpa"):
        model = AutoModelForCausalLM.from_pretrained(
            tiny_model_dir, dtype=getattr(torch, dtype), attn_implementation=A.attn_implementation(kernel)
        ).eval()
        assert model.config._attn_implementation == kernel
        with torch.inference_mode():
            logits[kernel] = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    real = attention_mask.bool()
    assert torch.equal(logits["grouped"][real], logits["eager"][real])
    # SDPA computes the same attention in another order: close, which is why the kernel is a param at all.
    assert torch.allclose(logits["sdpa"][real], logits["eager"][real], atol=0.1)


def test_generation_with_the_grouped_kernel_matches_eager(tiny_model_dir, tiny_tokenizer):
    """Through the evaluate stage's own decoding (continuous batching, prefix cache, roomy decode cache)."""
    prompts = ["의림지 입장료는 얼마인가요? 답:", "청풍호반 케이블카 운행 시간은 언제인가요? 답:", "제천 여행 추천"]
    answers = {}
    for kernel in ("eager", "grouped"):
        model, tokenizer = G.load_model(tiny_model_dir, None, "cpu", "float32", attention=kernel)
        assert model.config._attn_implementation == kernel
        answers[kernel] = G.generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=2, prefill_tokens=64)
    assert [r["answer"] for r in answers["grouped"]] == [r["answer"] for r in answers["eager"]]
    assert all(r["new_tokens"] >= 1 for r in answers["grouped"])


def test_an_unknown_attention_kernel_is_a_params_error(tiny_model_dir):
    with pytest.raises(
        UserError, match=r"^params: evaluate.attention must be one of sdpa, eager, grouped, got 'flash'$"
    ):
        G.load_model(tiny_model_dir, None, "cpu", "float32", attention="flash")


def test_a_model_with_attention_sinks_is_refused_not_answered_without_them():
    """gpt-oss-style models pass their sinks as ``s_aux``; eager adds them to the softmax, so dropping them silently
    would change the model."""
    import torch

    module = torch.nn.Module()
    module.head_dim = 4
    q, kv = torch.zeros(1, 4, 2, 4), torch.zeros(1, 1, 2, 4)
    out, _ = A.grouped_attention(module, q, kv, kv, None, sliding_window=None)  # a known-harmless extra kwarg
    assert out.shape == (1, 2, 4, 4)
    with pytest.raises(UserError, match=r"^evaluate.attention: grouped has no attention sinks \(s_aux\)"):
        A.grouped_attention(module, q, kv, kv, None, s_aux=torch.zeros(4))
