"""Model loading and batched greedy generation, shared by the evaluate stage and the demo.

The base model folder comes from the prepare_model stage; an optional LoRA
adapter (train stage) is merged in so both runs generate with the same code.

Two backends (params ``evaluate.backend``), same prompts, same greedy decoding,
same output records:

* ``transformers`` (default, any device): continuous batching (``greedy_decode``), the prompts' shared start
  (system prompt, few-shot turns) computed once (``shared_prefix``), and so are the longer starts that groups of
  prompts share (the same retrieved chunks: ``prefill_order``, ``extend_prefix``);
* ``vllm`` (CUDA only, when the vllm package is installed): continuous batching
  with the adapter served through ``LoRARequest`` (no merge). ``load_model``
  returns a ``VllmModel`` and ``generate`` dispatches on it, so callers do not change.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import time
import unicodedata
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tqdm import tqdm

from stages.common.attention import attn_implementation
from stages.common.errors import UserError
from stages.common.precision import DTYPES, choose_dtype
from stages.common.prompting import PromptLayout, build_messages

log = logging.getLogger("generation")

BACKENDS = ("transformers", "vllm")


def build_prompts(
    tokenizer, questions: list[dict[str, Any]], contexts: list[list[dict[str, Any]]], layout: PromptLayout
) -> list[str]:
    """Zero-shot prompts (as sft trains), rendered with the model's chat template."""
    return render_prompts(
        tokenizer, [build_messages(q["question"], c, layout) for q, c in zip(questions, contexts, strict=True)]
    )


def render_prompts(tokenizer, messages: list[list[dict[str, str]]]) -> list[str]:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the base model's tokenizer has no chat template (re-run prepare_model)")
    return [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]


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


def load_model(
    base: Path, adapter: Path | None, device: str, dtype: str, backend: str = "transformers", attention: str = "sdpa"
):
    """Base model (+ LoRA adapter) and its tokenizer, ready for batched greedy generation.

    transformers: the adapter is merged into the weights; ``attention`` is the kernel (``common.attention``).
    vllm: see ``load_vllm`` (its own kernels).
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
    # Loaded exactly as the baseline is: transformers keeps some buffers in fp32 whatever the dtype (Gemma-3's RoPE
    # frequencies). A merged model cast with .to(bf16) had them in bf16: coarser positions than in training, and a
    # 3x slower prefill on CPU.
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation(attention)
    )
    if adapter is not None:
        model.load_state_dict(merged_weights(base, adapter))  # copied into the loaded weights, cast to their dtype
    model.to(device).eval()
    return model, tokenizer


def merged_weights(base: Path, adapter: Path) -> dict[str, Any]:
    """The base model's weights with the LoRA adapter merged in, in fp32: added straight into bf16 weights, small
    LoRA deltas would round away (bf16 -> fp32 -> bf16 is exact, so unadapted weights stay the baseline's)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload().state_dict()


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


@dataclass
class DecodeState:
    """Rows decoded together: their KV cache, its padding mask, and each row's next token and position.

    ``rows`` maps batch positions to the caller's prompt numbers. ``attention_mask`` covers the cached columns
    (0 = left padding); ``next_tokens`` are chosen but not yet fed to the model.
    """

    rows: list[int]
    cache: Any
    attention_mask: Any
    next_tokens: Any
    next_positions: Any


@dataclass
class SharedPrefix:
    """The keys and values of a token prefix that several prompts start with (system prompt, few-shot turns, the
    same retrieved chunks), computed once: per layer ``[1, heads, length, head_dim]``, sliding-window layers
    included in full. ``ids`` are its tokens."""

    ids: list[int]
    keys: list[Any]
    values: list[Any]

    @property
    def length(self) -> int:
        return len(self.ids)

    def cut(self, length: int) -> SharedPrefix:
        """Its first ``length`` tokens: a token's keys and values depend only on the tokens before it."""
        if length >= self.length:
            return self
        return SharedPrefix(
            self.ids[:length], [k[:, :, :length] for k in self.keys], [v[:, :, :length] for v in self.values]
        )


def common_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    return len(os.path.commonprefix([a, b]))


def extend_prefix(model, prefix: SharedPrefix | None, ids: list[int]) -> SharedPrefix:
    """``ids`` (which start with ``prefix``'s tokens) as a prefix: only the tokens after ``prefix`` go through the
    model, in one forward pass."""
    import torch

    start = prefix.length if prefix is not None else 0
    mask = torch.ones((1, len(ids)), dtype=torch.long, device=model.device)
    cache = prefix_cache(model, prefix, mask) if prefix is not None else decode_cache(model)
    for layer in cache.layers:
        if getattr(layer, "is_sliding", False):
            # Keep the new columns past the window too: rows place a prefix at different columns. A sliding layer
            # loaded from ``prefix`` holds its window of it already, so its attention sees what a prefill's would.
            layer.activate_past_recording()
    model(
        input_ids=torch.tensor([ids[start:]], device=model.device),
        attention_mask=mask,
        position_ids=torch.arange(start, len(ids), device=model.device)[None],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    new = len(ids) - start
    keys = [layer.keys[:, :, -new:] for layer in cache.layers]
    values = [layer.values[:, :, -new:] for layer in cache.layers]
    if prefix is not None:
        keys = [torch.cat(pair, dim=-2) for pair in zip(prefix.keys, keys, strict=True)]
        values = [torch.cat(pair, dim=-2) for pair in zip(prefix.values, values, strict=True)]
    return SharedPrefix(list(ids), keys, values)


def shared_prefix(model, prompt_ids: list[list[int]]) -> SharedPrefix | None:
    """The prompts' common token prefix run through the model once (None when they share none). At least one token
    of every prompt is left out of it: a prefill needs an input."""
    if len(prompt_ids) < 2:  # one prompt: nothing to share
        return None
    length = min(len(os.path.commonprefix(prompt_ids)), min(len(ids) for ids in prompt_ids) - 1)
    if length < 1:
        return None
    return extend_prefix(model, None, prompt_ids[0][:length])


# Columns of spare room a decode cache gets when it is (re)allocated: torch.cat copied every layer's whole cache at
# every decode step (a fifth of a step on 2 CPU cores: docs/training-and-cost.md "Where the time goes"); with room, a step writes one
# column in place, and a copy happens only when the room runs out or the rows change (a row leaves or joins).
ROOM_COLUMNS = 64


@functools.cache
def _roomy_layers():
    """Cache layer classes that append into preallocated room (defined on first use: transformers loads lazily)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    class Room:
        def append(self, key_states, value_states) -> tuple[Any, Any]:
            """The cached columns plus the new ones, written into room after them; keys/values become views."""
            new = key_states.shape[-2]
            room = getattr(self, "room", None)
            # Anything else that set keys/values (a row left or joined, padding was trimmed) took them out of room.
            if room is None or room["keys"] is not self.keys or room["end"] + new > room["key_buffer"].shape[-2]:
                if self.keys.dim() != key_states.dim():  # the empty tensor of a fresh layer
                    self.keys, self.values = key_states[:, :, :0], value_states[:, :, :0]
                shape = [*self.keys.shape[:-2], self.keys.shape[-2] + new + ROOM_COLUMNS, self.keys.shape[-1]]
                room = {"key_buffer": self.keys.new_empty(shape), "value_buffer": self.values.new_empty(shape)}
                room["key_buffer"][:, :, : self.keys.shape[-2]] = self.keys
                room["value_buffer"][:, :, : self.keys.shape[-2]] = self.values
                room["start"], room["end"] = 0, self.keys.shape[-2]
                self.room = room
            end = room["end"]
            room["key_buffer"][:, :, end : end + new] = key_states
            room["value_buffer"][:, :, end : end + new] = value_states
            room["end"] = end + new
            self.keep_from(room["start"])
            return self.keys, self.values

        def keep_from(self, start: int) -> None:
            room = self.room
            room["start"] = start
            self.keys = room["keys"] = room["key_buffer"][:, :, start : room["end"]]
            self.values = room["value_buffer"][:, :, start : room["end"]]

    class RoomyLayer(Room, DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            return self.append(key_states, value_states)

    class RoomySlidingLayer(Room, DynamicSlidingWindowLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.cumulative_length += key_states.shape[-2]
            keys, values = self.append(key_states, value_states)
            if not self.record_past:  # as DynamicSlidingWindowLayer: keep the last sliding_window - 1 columns
                self.keep_from(max(self.room["end"] - (self.sliding_window - 1), self.room["start"]))
            return keys, values

    return RoomyLayer, RoomySlidingLayer


def decode_cache(model):
    """An empty cache whose layers append into preallocated room (``ROOM_COLUMNS``)."""
    from transformers import DynamicCache

    roomy, roomy_sliding = _roomy_layers()
    cache = DynamicCache(config=model.config)
    cache.layers = [
        roomy_sliding(sliding_window=layer.sliding_window) if getattr(layer, "is_sliding", False) else roomy()
        for layer in cache.layers
    ]
    return cache


def prefix_cache(model, prefix: SharedPrefix, attention_mask):
    """The cache a left-padded batch would hold after its first ``prefix.length`` columns: per row its padding
    (zero keys/values, masked) and then the start of the shared prefix."""
    import torch

    width = prefix.length
    padding = (attention_mask.shape[-1] - attention_mask.sum(-1)).clamp(max=width).tolist()
    cache = decode_cache(model)
    for layer, keys, values in zip(cache.layers, prefix.keys, prefix.values, strict=True):
        rows_keys = [_left_pad(keys[:, :, : width - pad], width, -2) for pad in padding]
        rows_values = [_left_pad(values[:, :, : width - pad], width, -2) for pad in padding]
        layer.update(torch.cat(rows_keys), torch.cat(rows_values))  # a sliding layer keeps its window of them
    return cache


def prefill(model, rows: list[int], input_ids, attention_mask, prefix: SharedPrefix | None = None) -> DecodeState:
    """One forward pass over left-padded prompts: their cache and first generated tokens. With a ``prefix`` the
    first ``prefix.length`` columns come from its cache instead (the same keys and values: a token's depend only
    on the tokens before it), so only the rest is computed."""
    # Left padding: positions count real tokens only (what generate() derives from the attention mask).
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    start, cache = (prefix.length, prefix_cache(model, prefix, attention_mask)) if prefix else (0, decode_cache(model))
    out = model(
        input_ids=input_ids[:, start:],
        attention_mask=attention_mask,
        position_ids=position_ids[:, start:],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return DecodeState(rows, out.past_key_values, attention_mask, next_tokens(out.logits), position_ids[:, -1:] + 1)


def next_tokens(logits):
    """Each row's most likely next token (greedy). ``max`` gives argmax's index, the first of tied maxima, and on CPU
    it is 4x faster than ``argmax`` over Gemma-3's 262k-token vocabulary in bf16 (16 ms per decode step of 32 rows)."""
    return logits[:, -1, :].max(-1).indices


def decode_step(model, state: DecodeState) -> DecodeState:
    """Feed every row its next token; the cache grows by one column."""
    import torch

    mask = torch.cat([state.attention_mask, state.attention_mask.new_ones((len(state.rows), 1))], dim=-1)
    out = model(
        input_ids=state.next_tokens[:, None],
        attention_mask=mask,
        position_ids=state.next_positions,
        past_key_values=state.cache,
        use_cache=True,
    )
    return DecodeState(state.rows, out.past_key_values, mask, next_tokens(out.logits), state.next_positions + 1)


def _cache_columns(state: DecodeState) -> int:
    return state.attention_mask.shape[-1]


def keep_rows(state: DecodeState, keep: list[int]) -> DecodeState | None:
    """Only the rows at ``keep`` (None when none is left), without the leading columns that are padding in all of
    them: masked columns change no attention score, and distances to the newest token stay the same, so sliding
    windows see the same tokens."""
    import torch

    if not keep:
        return None
    if len(keep) < len(state.rows):
        index = torch.tensor(keep, device=state.attention_mask.device)
        for layer in state.cache.layers:
            layer.batch_select_indices(index)
        state = DecodeState(
            [state.rows[i] for i in keep],
            state.cache,
            state.attention_mask[index],
            state.next_tokens[index],
            state.next_positions[index],
        )
    padding = int((state.attention_mask.sum(0) == 0).long().cumprod(0).sum())
    if padding:
        columns = _cache_columns(state) - padding
        for layer in state.cache.layers:
            if getattr(layer, "is_sliding", False):
                layer.cumulative_length = columns
            layer.keys, layer.values = layer.keys[:, :, -columns:], layer.values[:, :, -columns:]
        state.attention_mask = state.attention_mask[:, padding:]
    return state


def _left_pad(tensor, length: int, dim: int):
    import torch

    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def merge_states(running: DecodeState | None, joining: DecodeState | None) -> DecodeState | None:
    """One batch of both: the shorter side is left-padded (zero keys/values, mask 0), so every row keeps its
    tokens right-aligned, as in a left-padded batch that had held them from the start."""
    import torch

    if running is None or joining is None:
        return running or joining
    columns = max(_cache_columns(running), _cache_columns(joining))
    for mine, theirs in zip(running.cache.layers, joining.cache.layers, strict=True):
        width = max(mine.keys.shape[-2], theirs.keys.shape[-2])
        mine.keys = torch.cat([_left_pad(mine.keys, width, -2), _left_pad(theirs.keys, width, -2)])
        mine.values = torch.cat([_left_pad(mine.values, width, -2), _left_pad(theirs.values, width, -2)])
        if getattr(mine, "is_sliding", False):
            mine.cumulative_length = columns
    return DecodeState(
        running.rows + joining.rows,
        running.cache,
        torch.cat([_left_pad(running.attention_mask, columns, -1), _left_pad(joining.attention_mask, columns, -1)]),
        torch.cat([running.next_tokens, joining.next_tokens]),
        torch.cat([running.next_positions, joining.next_positions]),
    )


def prefill_order(prompt_ids: list[list[int]], root: int, min_shared: int) -> list[int]:
    """The order prompts are prefilled in. Prompts sharing at least ``min_shared`` tokens past the ``root`` prefix
    (all prompts' common start) with a neighbour in token order (the same retrieved chunks) come last, in token
    order, so that each prefill group's shared prefix extends the one before; the others first, shortest first
    (a prefill group of them needs little padding). ``min_shared`` 0: all shortest first."""
    shortest_first = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]), i))
    if min_shared <= 0:
        return shortest_first
    by_tokens = sorted(range(len(prompt_ids)), key=lambda i: (prompt_ids[i], i))
    shares: set[int] = set()
    for a, b in itertools.pairwise(by_tokens):
        if common_length(prompt_ids[a], prompt_ids[b]) - root >= min_shared:
            shares.update((a, b))
    return [i for i in shortest_first if i not in shares] + [i for i in by_tokens if i in shares]


def greedy_decode(
    model,
    encode,
    order: list[int],
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    eos: set[int],
    batch_size: int,
    prefill_tokens: int,
    ends_answer=None,
    on_done=None,
    seconds: dict[int, float] | None = None,
    prefix: SharedPrefix | None = None,
    min_shared: int = 0,
) -> dict[int, tuple[list[int], bool]]:
    """Greedy decoding with continuous batching: up to ``batch_size`` rows decode together; a row leaves as soon as
    its answer ends, and when enough places are free the next prompts of ``order`` are prefilled in one forward
    pass (as many as fit in ``prefill_tokens`` padded tokens past their shared prefix, at least one) and join the
    running rows.

    Per row, the tokens are those of ``model.generate(do_sample=False)``: the same masks, positions and caches as
    a left-padded batch, so up to the float rounding of a different batch shape. Why two sizes: on 2 CPU cores a
    decode step costs about the same for 8 or 32 rows (the weights are read once per step), while prefill is
    fastest at a few thousand tokens per forward (docs/training-and-cost.md "Where the time goes").
    ``encode(rows)`` gives the left-padded (input_ids, attention_mask) of those prompts, ``prompt_ids[row]``
    their tokens; ``ends_answer(ids)`` is an extra per-row end (the line end); ``on_done(row)`` is called
    when a row ends; ``seconds`` (if given) receives each row's share of the forward passes it took part in
    (a pass's time split equally among its rows, so the shares add up to the decoding time).

    Prefixes (a radix-style prefix cache): ``prefix`` (every prompt's shared start, ``shared_prefix``) is not
    computed again for each prompt. With ``min_shared`` > 0, a prefill group whose prompts share at least that many
    more tokens (the same retrieved chunks: ``prefill_order`` puts such prompts next to each other) has its
    shared prefix computed once, in one forward pass of one row, starting from as much of the previous group's
    prefix as it shares; fewer shared tokens are not worth a pass of their own.
    Returns per row: (new ids without the ending EOS, whether an EOS came).
    """
    queue = deque(order)
    new_ids: dict[int, list[int]] = {row: [] for row in order}
    hit_eos: dict[int, bool] = dict.fromkeys(order, False)
    root = prefix.length if prefix is not None else 0
    node = prefix  # the prefix computed last; the next group starts from what it shares of it
    counts = {"passes": 0, "prompt": 0, "prefix": 0}  # prompt tokens computed (padding included), in prefixes

    def worth_sharing(a: list[int], b: list[int]) -> int:
        """The leading tokens two prompts share, if that many are worth a prefix of their own, else ``root``."""
        shared = min(common_length(a, b), len(a) - 1, len(b) - 1)
        return shared if min_shared > 0 and shared - root >= min_shared else root

    def next_group() -> tuple[int, int]:
        """How many of the next prompts prefill together, and the leading tokens all of them share that are worth
        a prefix of their own (``root`` if none)."""
        ahead = list(itertools.islice(queue, batch_size + 1))
        first = prompt_ids[ahead[0]]
        longest, size, level = len(first), 1, root
        for k in range(1, min(batch_size, len(ahead))):
            ids = prompt_ids[ahead[k]]
            shared = worth_sharing(first, ids) if size == 1 else min(worth_sharing(first, ids), level)
            if size > 1 and shared < level:
                break  # it would lower the group's shared prefix: it starts the next group
            if shared == root and k + 1 < len(ahead) and worth_sharing(ids, prompt_ids[ahead[k + 1]]) > root:
                break  # it shares a prefix with the prompts after it, not with this group
            if (size + 1) * (max(longest, len(ids)) - shared) > prefill_tokens:
                break
            longest, size, level = max(longest, len(ids)), size + 1, shared
        return size, level

    def group_prefix(rows: list[int], level: int) -> SharedPrefix | None:
        """What these rows share of the previous prefix, extended to ``level`` tokens when that is longer."""
        nonlocal node
        base = None
        if node is not None:
            common = min(min(common_length(node.ids, prompt_ids[r]), len(prompt_ids[r]) - 1) for r in rows)
            base = node.cut(common) if common > 0 else None
        if level > (base.length if base is not None else 0):
            node = timed(extend_prefix, rows, base, prompt_ids[rows[0]][:level])
            counts["prefix"] += node.length - (base.length if base is not None else 0)
            counts["passes"] += 1
            return node
        return base

    def record(state: DecodeState) -> DecodeState | None:
        keep = []
        for pos, (row, token) in enumerate(zip(state.rows, state.next_tokens.tolist(), strict=True)):
            ids = new_ids[row]
            if token in eos:
                hit_eos[row] = True
            else:
                ids.append(token)
                if len(ids) < max_new_tokens and (ends_answer is None or not ends_answer(ids)):
                    keep.append(pos)
                    continue
            if on_done is not None:
                on_done(row)
        return keep_rows(state, keep)

    def timed(forward, rows: list[int], *args):
        start = time.perf_counter()
        out = forward(model, *args)
        if seconds is not None:
            share = (time.perf_counter() - start) / len(rows)
            for row in rows:
                seconds[row] = seconds.get(row, 0.0) + share
        return out

    state: DecodeState | None = None
    while queue or state is not None:
        free = batch_size - (len(state.rows) if state is not None else 0)
        group, level = next_group() if queue else (0, root)
        if group and free >= group:
            rows = [queue.popleft() for _ in range(group)]
            start = group_prefix(rows, level)
            input_ids, attention_mask = encode(rows)
            counts["passes"] += 1
            counts["prompt"] += len(rows) * (input_ids.shape[-1] - (start.length if start is not None else 0))
            state = merge_states(state, record(timed(prefill, rows, rows, input_ids, attention_mask, start)))
        else:
            state = record(timed(decode_step, state.rows, state))
    log.info(
        "prefill: %d passes computed %d prompt tokens (padding included; %d of them in shared prefixes) for %d "
        "prompts of %d tokens",
        counts["passes"],
        counts["prompt"] + counts["prefix"],
        counts["prefix"],
        len(order),
        sum(len(prompt_ids[r]) for r in order),
    )
    return {row: (new_ids[row], hit_eos[row]) for row in order}


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
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    prefill_tokens: int,
    stop_at_line_end: bool = False,
    min_shared: int = 0,
) -> list[dict[str, Any]]:
    """Greedy decoding of every prompt (``greedy_decode``: continuous batching, prompts taken in
    ``prefill_order``; prompts that share ``min_shared`` tokens past their common start prefill from one computed
    prefix, 0 = only the common start is shared); ``latency_s`` = the answer's share of the decoding time (each forward
    pass split among its rows: they add up to the total, so tokens/s is the throughput).

    ``stop_at_line_end``: an answer also ends at its first line break after content (``hit_eos`` is then True:
    the answer ended, it did not run out of budget). A ``VllmModel`` (backend vllm) generates all prompts in one
    continuous batch of its own instead.
    """
    if isinstance(model, VllmModel):
        return generate_vllm(model, tokenizer, prompts, max_new_tokens, stop_at_line_end)
    import torch

    eos = set(eos_ids(model, tokenizer))
    ends_answer = line_end_check(tokenizer) if stop_at_line_end else None
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    lengths = [len(ids) for ids in prompt_ids]
    seconds: dict[int, float] = {}
    bar = tqdm(total=len(prompts), desc="generate", unit="answer")

    def encode(rows: list[int]):
        # The chat template already writes BOS: no special tokens added here.
        enc = tokenizer([prompts[i] for i in rows], add_special_tokens=False, padding=True, return_tensors="pt")
        return enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device)

    t0 = time.perf_counter()
    with torch.inference_mode():
        prefix = shared_prefix(model, prompt_ids)
        if prefix is not None:
            log.info("shared prompt prefix: %d tokens, computed once", prefix.length)
            seconds.update(dict.fromkeys(range(len(prompts)), (time.perf_counter() - t0) / len(prompts)))
        order = prefill_order(prompt_ids, prefix.length if prefix is not None else 0, min_shared)
        decoded = greedy_decode(
            model,
            encode,
            order,
            prompt_ids,
            max_new_tokens,
            eos,
            batch_size,
            prefill_tokens,
            ends_answer,
            on_done=lambda row: bar.update(1),
            seconds=seconds,
            prefix=prefix,
            min_shared=min_shared,
        )
    total_time = time.perf_counter() - t0
    bar.close()
    results = []
    for i in range(len(prompts)):
        ids, hit_eos = decoded[i]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if stop_at_line_end:
            text, hit_line_end = cut_at_line_end(text)
            hit_eos = hit_eos or hit_line_end
        results.append(
            {
                "answer": unicodedata.normalize("NFC", text).strip(),
                "new_tokens": len(ids) + int(decoded[i][1]),
                "hit_eos": hit_eos,
                "prompt_tokens": lengths[i],
                "latency_s": round(seconds[i], 4),
            }
        )
    total_tokens = sum(r["new_tokens"] for r in results)
    log.info(
        "generated %d tokens in %.1f s: %.1f tokens/s, %.2f s/question",
        total_tokens,
        total_time,
        total_tokens / max(total_time, 1e-9),
        total_time / max(len(prompts), 1),
    )
    return results


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
