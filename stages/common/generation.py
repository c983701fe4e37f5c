"""Model loading and batched greedy generation, shared by the evaluate stage and the demo.

The base model folder comes from the prepare_model stage; an optional LoRA
adapter (train stage) is merged in so both runs generate with the same code.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stages.common.errors import UserError
from stages.common.prompting import build_messages

log = logging.getLogger("generation")

DTYPES = ("bfloat16", "float32", "float16")


def build_prompts(
    tokenizer, questions: list[dict[str, Any]], contexts: list[list[dict[str, Any]]], system: str, max_chars: int
) -> list[str]:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the base model's tokenizer has no chat template (re-run prepare_model)")
    return [
        tokenizer.apply_chat_template(
            build_messages(q["question"], chunks, system, max_chars), tokenize=False, add_generation_prompt=True
        )
        for q, chunks in zip(questions, contexts, strict=True)
    ]


def resolve_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise UserError(f"params: evaluate.dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def load_model(base: Path, adapter: Path | None, device: str, dtype: str):
    """Base model (+ merged LoRA adapter) and its tokenizer, ready for left-padded batched generation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (base / "config.json").is_file():
        raise UserError(f"{base}: not a model folder (run the prepare_model stage first)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params: evaluate.device={device!r} but torch sees no CUDA GPU")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Merge in fp32, then cast: added straight into bf16 weights, small LoRA deltas would round away.
    # (bf16 -> fp32 -> bf16 is exact, so the base weights stay identical to the baseline's.)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if adapter else resolve_dtype(dtype))
    if adapter is not None:
        from peft import PeftModel

        if not (adapter / "adapter_config.json").is_file():
            raise UserError(f"{adapter}: no adapter_config.json (run the train stage first)")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        model = model.to(resolve_dtype(dtype))
    model.to(device).eval()
    return model, tokenizer


def split_generation(tokens: list[int], eos_id: int | list[int]) -> tuple[list[int], bool]:
    """Generated ids up to (not including) the first EOS, and whether an EOS came."""
    eos = set(eos_id) if isinstance(eos_id, list | tuple | set) else {eos_id}
    for i, tok in enumerate(tokens):
        if tok in eos:
            return tokens[:i], True
    return tokens, False


def eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends an answer: the tokenizer's EOS plus the model's generation_config EOS (may be a list)."""
    ids = [tokenizer.eos_token_id]
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += gen_eos if isinstance(gen_eos, list) else [gen_eos]
    return sorted({i for i in ids if i is not None})


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[dict[str, Any]]:
    """Greedy decoding, left-padded batches of similar length; per-example latency = share of batch time."""
    import torch
    from transformers import GenerationConfig

    eos_id = eos_ids(model, tokenizer)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: (lengths[i], i))  # less padding per batch
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    total_tokens, total_time = 0, 0.0
    bar = tqdm(range(0, len(order), batch_size), desc="generate", unit="batch")
    for start in bar:
        idx = order[start : start + batch_size]
        # The chat template already writes BOS: no special tokens added here.
        enc = tokenizer([prompts[i] for i in idx], add_special_tokens=False, padding=True, return_tensors="pt").to(
            model.device
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=gen_cfg)
        elapsed = time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        for row, i in enumerate(idx):
            ids, hit_eos = split_generation(new[row], eos_id)
            n_new = len(ids) + int(hit_eos)
            total_tokens += n_new
            text = tokenizer.decode(ids, skip_special_tokens=True)
            results[i] = {
                "answer": unicodedata.normalize("NFC", text).strip(),
                "new_tokens": n_new,
                "hit_eos": hit_eos,
                "prompt_tokens": lengths[i],
                "latency_s": round(elapsed / len(idx), 4),
            }
        total_time += elapsed
        bar.set_postfix(tok_s=f"{total_tokens / max(total_time, 1e-9):.1f}")
    log.info(
        "generated %d tokens in %.1f s: %.1f tokens/s, %.2f s/question",
        total_tokens,
        total_time,
        total_tokens / max(total_time, 1e-9),
        total_time / max(len(prompts), 1),
    )
    return [r for r in results if r is not None]
