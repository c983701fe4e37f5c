"""Model loading and batched greedy generation, shared by the evaluate stage and the demo.

The base model folder comes from the prepare_model stage; an optional LoRA
adapter (train stage) is merged in so both runs generate with the same code.

Two backends (params ``evaluate.backend``), same prompts, same greedy decoding,
same output records:

* ``transformers`` (default, any device): left-padded batches of similar length;
* ``vllm`` (CUDA only, when the vllm package is installed): continuous batching
  with the adapter served through ``LoRARequest`` (no merge). ``load_model``
  returns a ``VllmModel`` and ``generate`` dispatches on it, so callers do not change.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tqdm import tqdm

from stages.common.errors import UserError
from stages.common.precision import DTYPES, choose_dtype
from stages.common.prompting import build_messages

log = logging.getLogger("generation")

BACKENDS = ("transformers", "vllm")


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


def generation_dtype(name: str, device: str = "cpu") -> tuple[str, str]:
    """(dtype name, reason) that generation runs in: ``auto`` resolves by hardware (stages.common.precision).

    The evaluate stage writes both into its metrics; ``load_model`` logs them.
    """
    if name not in DTYPES:
        raise UserError(f"params: evaluate.dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return choose_dtype(name, device)


def resolve_dtype(name: str, device: str = "cpu"):
    """The torch dtype for a params value (``auto`` included)."""
    import torch

    return getattr(torch, generation_dtype(name, device)[0])


def load_tokenizer(base: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_adapter(adapter: Path) -> None:
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: no adapter_config.json (run the train stage first)")


def load_model(base: Path, adapter: Path | None, device: str, dtype: str, backend: str = "transformers"):
    """Base model (+ LoRA adapter) and its tokenizer, ready for batched greedy generation.

    transformers: the adapter is merged into the weights. vllm: see ``load_vllm``.
    """
    import torch

    if backend not in BACKENDS:
        raise UserError(f"params: evaluate.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not (base / "config.json").is_file():
        raise UserError(f"{base}: not a model folder (run the prepare_model stage first)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"params: evaluate.device={device!r} but torch sees no CUDA GPU")
    dtype, why = generation_dtype(dtype, device)
    log.info("generation dtype %s (%s)", dtype, why)
    if adapter is not None:
        check_adapter(adapter)
    if backend == "vllm":
        return load_vllm(base, adapter, device, dtype), load_tokenizer(base)
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(base)
    # Merge in fp32, then cast: added straight into bf16 weights, small LoRA deltas would round away.
    # (bf16 -> fp32 -> bf16 is exact, so the base weights stay identical to the baseline's.)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if adapter else resolve_dtype(dtype))
    if adapter is not None:
        from peft import PeftModel

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


def cut_at_line_end(text: str) -> tuple[str, bool]:
    """The answer up to the first line break that follows some content, and whether there was one.

    Answers are one sentence by contract; a line break after content ends the answer for every model
    alike (a base model otherwise keeps writing the next turn until the token budget runs out).
    """
    start = len(text) - len(text.lstrip())
    cut = text.find("\n", start)
    return (text[:cut], True) if cut >= 0 else (text, False)


def greedy_decode(
    model, input_ids, attention_mask, max_new_tokens: int, eos: set[int], ends_answer=None
) -> list[tuple[list[int], bool]]:
    """Greedy decoding of one left-padded batch in which a row leaves the batch as soon as its answer ends.

    The tokens are those of ``model.generate(do_sample=False)`` (same cache class, masks and position ids); the
    difference is cost: generate() keeps computing every row until the longest one ends, and in our runs about half
    the row-steps of the few-shot and fine-tuned evaluations were such padding. ``ends_answer(ids)`` is an extra
    per-row end (the line end). Returns per row: (new ids without the ending EOS, whether an EOS came).
    """
    import torch

    n_rows = input_ids.shape[0]
    new_ids: list[list[int]] = [[] for _ in range(n_rows)]
    hit_eos = [False] * n_rows
    rows = list(range(n_rows))  # batch position -> row of the caller's batch
    # Left padding: positions count real tokens only (what generate() derives from the attention mask).
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True, logits_to_keep=1
    )
    for step in range(max_new_tokens):
        next_tokens = out.logits[:, -1, :].argmax(-1)
        keep = []
        for pos, (row, token) in enumerate(zip(rows, next_tokens.tolist(), strict=True)):
            if token in eos:
                hit_eos[row] = True
                continue
            new_ids[row].append(token)
            if ends_answer is None or not ends_answer(new_ids[row]):
                keep.append(pos)
        if not keep or step == max_new_tokens - 1:
            break
        cache = out.past_key_values
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=input_ids.device)
            for layer in cache.layers:
                layer.batch_select_indices(index)
            rows = [rows[i] for i in keep]
            attention_mask, position_ids, next_tokens = attention_mask[index], position_ids[index], next_tokens[index]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=-1)
        position_ids = position_ids[:, -1:] + 1
        out = model(
            input_ids=next_tokens[:, None],
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
    return list(zip(new_ids, hit_eos, strict=True))


def line_end_check(tokenizer):
    """``ends_answer`` for greedy_decode: the row's text has a line break after content (decoded only when the
    newest token holds a line break, so the check costs nothing on most steps)."""
    has_newline: dict[int, bool] = {}

    def ends_answer(ids: list[int]) -> bool:
        last = ids[-1]
        if last not in has_newline:
            has_newline[last] = "\n" in tokenizer.decode([last], skip_special_tokens=True)
        return has_newline[last] and cut_at_line_end(tokenizer.decode(ids, skip_special_tokens=True))[1]

    return ends_answer


def generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, stop_at_line_end: bool = False
) -> list[dict[str, Any]]:
    """Greedy decoding (``greedy_decode``), left-padded batches of similar length; per-example latency = share of
    batch time.

    ``stop_at_line_end``: an answer also ends at its first line break after content (``hit_eos`` is then True:
    the answer ended, it did not run out of budget). A ``VllmModel`` (backend vllm) generates all prompts in one
    continuous batch instead.
    """
    if isinstance(model, VllmModel):
        return generate_vllm(model, tokenizer, prompts, max_new_tokens, stop_at_line_end)
    import torch

    eos = set(eos_ids(model, tokenizer))
    ends_answer = line_end_check(tokenizer) if stop_at_line_end else None
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
            decoded = greedy_decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens, eos, ends_answer)
        elapsed = time.perf_counter() - t0
        for (ids, hit_eos), i in zip(decoded, idx, strict=True):
            n_new = len(ids) + int(hit_eos)
            total_tokens += n_new
            text = tokenizer.decode(ids, skip_special_tokens=True)
            if stop_at_line_end:
                text, hit_line_end = cut_at_line_end(text)
                hit_eos = hit_eos or hit_line_end
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


# ---------------------------------------------------------------- vLLM backend (CUDA)
class VllmModel:
    """A vLLM engine plus the LoRA request every generation uses (None for the baseline)."""

    def __init__(self, llm, lora_request, eos: list[int]):
        self.llm = llm
        self.lora_request = lora_request
        self.eos = eos


def import_vllm():
    """The vllm module, or a one-line UserError saying how to get it or avoid it."""
    try:
        import vllm
    except ImportError as exc:
        raise UserError(
            "params: evaluate.backend=vllm but the vllm package is not installed "
            "(pip install vllm on the CUDA machine, or set evaluate.backend: transformers)"
        ) from exc
    return vllm


def load_vllm(base: Path, adapter: Path | None, device: str, dtype: str) -> VllmModel:
    import json

    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise UserError(
            f"params: evaluate.backend=vllm needs a CUDA GPU (evaluate.device={device!r}, "
            f"torch sees {'a' if torch.cuda.is_available() else 'no'} GPU); use evaluate.backend: transformers"
        )
    vllm = import_vllm()
    from vllm.lora.request import LoRARequest

    lora_kwargs: dict[str, Any] = {}
    lora_request = None
    if adapter is not None:
        rank = int(json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16))
        lora_kwargs = {"enable_lora": True, "max_lora_rank": rank, "max_loras": 1}
        lora_request = LoRARequest("adapter", 1, str(adapter.resolve()))
    llm = vllm.LLM(model=str(base), tokenizer=str(base), dtype=dtype, seed=0, **lora_kwargs)
    return VllmModel(
        llm, lora_request, eos_ids(SimpleNamespace(generation_config=_generation_config(base)), load_tokenizer(base))
    )


def _generation_config(base: Path):
    """The model folder's generation_config.json (its EOS list), or None when it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(base)
    except OSError:
        return None


def generate_vllm(
    model: VllmModel, tokenizer, prompts: list[str], max_new_tokens: int, stop_at_line_end: bool = False
) -> list[dict[str, Any]]:
    """Greedy (temperature 0) generation of every prompt; the same records as ``generate``."""
    from vllm import SamplingParams

    # Token ids, not text: the chat template already wrote BOS, and vLLM would add another.
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    sampling = SamplingParams(
        temperature=0.0,
        max_tokens=max_new_tokens,
        stop_token_ids=model.eos,
        skip_special_tokens=True,
    )
    t0 = time.perf_counter()
    outs = model.llm.generate(
        [{"prompt_token_ids": x} for x in ids], sampling, lora_request=model.lora_request, use_tqdm=True
    )
    elapsed = time.perf_counter() - t0
    results = [
        vllm_record(o.outputs[0], len(x), model.eos, tokenizer, elapsed / max(len(prompts), 1), stop_at_line_end)
        for o, x in zip(outs, ids, strict=True)
    ]
    total = sum(r["new_tokens"] for r in results)
    log.info("vllm: generated %d tokens in %.1f s: %.1f tokens/s", total, elapsed, total / max(elapsed, 1e-9))
    return results


def vllm_record(
    output, prompt_tokens: int, eos: list[int], tokenizer, latency_s: float, stop_at_line_end: bool = False
) -> dict[str, Any]:
    """One vLLM CompletionOutput as a generation record (EOS and line ends counted like the transformers path).

    The line-end cut is applied here, not through vLLM's `stop=`, which would also stop at a leading line break.
    """
    tokens, saw_eos = split_generation(list(output.token_ids), eos)
    hit_eos = saw_eos or output.finish_reason == "stop"  # vLLM may drop the stop id from token_ids
    n_new = len(tokens) + int(hit_eos)
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if stop_at_line_end:
        text, hit_line_end = cut_at_line_end(text)
        hit_eos = hit_eos or hit_line_end
    return {
        "answer": unicodedata.normalize("NFC", text).strip(),
        "new_tokens": n_new,
        "hit_eos": hit_eos,
        "prompt_tokens": prompt_tokens,
        "latency_s": round(latency_s, 4),
    }
