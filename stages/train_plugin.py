"""Axolotl plugin used by ``stages.train`` (not a stage; loaded by Axolotl by name).

    plugins: [stages.train_plugin.BrochureTrainPlugin]

What it adds to a plain Axolotl run:

* ``logits_on_labels_only: true`` computes the LM head and the cross-entropy
  only at positions whose label is trained (the answer and its EOS). Stock
  transformers models project *every* position onto the vocabulary; for
  Gemma 3 that is a 262 144-wide fp32 matrix per prompt token, which dominates
  CPU training time and memory for RAG prompts (~600 prompt tokens, ~20
  answer tokens). The loss is the same number (sum of per-token CE over
  labelled tokens / labelled-token count); only the work for unlabelled
  positions, whose logits the loss never reads, is skipped.
* ``detach_prompt: true`` (with the above) runs the prefix that no row of a micro-batch is trained on (system
  prompt, documents, question) without autograd and the answer turns on its cached keys/values. The loss is the
  same number; backward covers ~100 answer tokens instead of ~600 prompt tokens too (1.75x less time per
  micro-batch on 2 cores, bf16 and fp32 alike), and the LoRA weights get no gradient through how the prompt's
  keys/values were computed (the answer tokens' own path keeps all of its gradient).
* ``final_eval: true`` forces an evaluation at the last step, so the run
  always ends with a validation loss (Axolotl already evaluates at step 0
  when ``eval_steps`` is set).
* ``use_cpu: true`` passes ``use_cpu`` to the HF TrainingArguments, which
  Axolotl never sets: without it bf16 autocast on CPU fails ("Your setup
  doesn't support bf16/gpu").
* Without gradient checkpointing, the hook Axolotl always adds with
  ``enable_input_require_grads()`` (the embeddings' output requires grad) is
  removed: only checkpointed layers need it. With it, backward also ran through
  every frozen layer below the lowest LoRA layer, computing input gradients
  that no weight uses; the LoRA gradients are the same either way.
* ``fast_lora_dropout: true`` (CPU) swaps each LoRA input's ``nn.Dropout`` for ``BitsDropout``: the same
  inverted dropout (each element kept with probability 1 - p, independently, scaled by 1 / (1 - p)), drawn from
  16 random bits per element taken out of 64-bit random integers. torch's CPU dropout draws one Bernoulli
  sample per element (``bernoulli_``, ~12 ns each); with LoRA on the 7 projections of all 18 layers the
  dropout was a third to two fifths of a bf16 training step. p is rounded to a multiple of 1/65536 (0.05 -> 0.0500031).
* ``state_file``: the trainer state (log history: per-step loss, eval loss,
  token counts) is written there at the end of training; Axolotl only writes it
  inside checkpoints, which ``stages.train`` does not keep.
"""

from __future__ import annotations

import dataclasses
import json
import time
import types
from typing import Any

import torch
import torch.nn.functional as F
from axolotl.integrations.base import BasePlugin
from axolotl.utils.logging import get_logger
from pydantic import BaseModel
from transformers import TrainerCallback
from transformers.modeling_outputs import CausalLMOutputWithPast

from stages.common.io import write_text

log = get_logger("axolotl.brochure_plugin")  # Axolotl shows only loggers under "axolotl"
IGNORE_INDEX = -100


class BrochureTrainArgs(BaseModel):
    """Config keys this plugin adds to the Axolotl schema."""

    logits_on_labels_only: bool | None = None
    detach_prompt: bool | None = None
    final_eval: bool | None = None
    state_file: str | None = None
    use_cpu: bool | None = None
    fast_lora_dropout: bool | None = None


def prompt_split(labels: torch.Tensor) -> int:
    """Length of the prefix that no row of the batch trains on: every position before it only predicts unlabelled
    tokens (position t predicts label t + 1), so its hidden states feed the loss only through attention."""
    labelled = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero()
    return int(labelled[0]) if len(labelled) else 0


def labelled_positions_forward(model: Any, detach_prompt: bool = False) -> Any:
    """Return a forward for a ``*ForCausalLM`` that projects only labelled positions.

    ``detach_prompt``: the shared unlabelled prefix (system prompt, documents, question) runs without autograd and
    the rest attends to its cached keys/values, so backward covers only the answer turns. The loss is the same
    number; the LoRA gradients lose the part that flows back through the prompt's keys and values.
    """
    original = model.forward
    backbone, head = model.model, model.lm_head
    softcap = getattr(model.config, "final_logit_softcapping", None)

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        if labels is None:  # generation / inference: the stock forward
            return original(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        num_items = kwargs.pop("num_items_in_batch", None)
        for unused in ("logits_to_keep", "use_cache", "return_dict"):
            kwargs.pop(unused, None)
        split = prompt_split(labels) if detach_prompt and torch.is_grad_enabled() else 0
        if split > 0:
            # Rows are right-padded and every row's labels start at or after `split`, so the prefix holds no
            # padding: positions 0..split-1 in every row, as in the full forward.
            with torch.no_grad():
                prefix = backbone(
                    input_ids=input_ids[:, :split], attention_mask=attention_mask[:, :split], use_cache=True, **kwargs
                )
            out = backbone(
                input_ids=input_ids[:, split:],
                attention_mask=attention_mask,
                past_key_values=prefix.past_key_values,
                use_cache=True,
                **kwargs,
            )
            labels = labels[:, split:]
        else:
            out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        target = labels[:, 1:]
        keep = target != IGNORE_INDEX
        hidden = out.last_hidden_state[:, :-1, :][keep]
        logits = head(hidden).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss = F.cross_entropy(logits, target[keep], reduction="sum")
        denom = num_items if num_items is not None else keep.sum().clamp(min=1)
        if torch.is_tensor(denom):
            denom = denom.to(loss.device)
        return CausalLMOutputWithPast(loss=loss / denom, logits=None)

    return types.MethodType(forward, model)


class _RunCallback(TrainerCallback):
    def __init__(self, final_eval: bool, state_file: str | None):
        self.final_eval = final_eval
        self.state_file = state_file
        self.info: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()
        self.info["step_seconds"] = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        # optimizer steps only: evaluation runs after on_step_end
        self.info["step_seconds"] += time.perf_counter() - self.step_t0
        # Axolotl evaluates at step 0 (eval_on_start) and every eval_steps;
        # make sure the last step is evaluated as well.
        if self.final_eval and state.max_steps and state.global_step >= state.max_steps:
            control.should_evaluate = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.info["train_seconds"] = time.perf_counter() - self.t0
        # One writer: with several processes (multi-GPU) every rank gets this call, and a rank reading the file
        # while another rewrote it found it empty. Built in memory, written whole (temp file + rename).
        if self.state_file and state.is_world_process_zero:
            data = json.loads(json.dumps(dataclasses.asdict(state), sort_keys=True))  # save_to_json's key order
            data["brochure_run_info"] = self.info
            write_text(self.state_file, json.dumps(data, indent=2) + "\n")


class BitsDropout(torch.nn.Module):
    """Inverted dropout drawing 16 random bits per element (see the module docstring); p in [0, 1)."""

    LEVELS = 1 << 16

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.drop_levels = round(p * self.LEVELS)
        if self.drop_levels == self.LEVELS:
            raise ValueError(f"dropout probability {p} rounds to 1 in steps of 1/{self.LEVELS}")
        self.p = self.drop_levels / self.LEVELS
        self.scale = 1.0 / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_levels == 0:
            return x
        n = x.numel()
        # 64-bit integers over their whole range: each of their four 16-bit lanes is uniform on [-2^15, 2^15)
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.drop_levels - (1 << 15)
        if x.dtype in (torch.bfloat16, torch.float16):
            # x * scale is computed in fp32 and rounded once: the values (forward and backward) of an fp32 multiplier
            # rounded back, without the fp32 copy of every element (~2-4% of a bf16 CPU step, docs/training-and-cost.md)
            return torch.where(keep, x * self.scale, 0)
        # fp32: one multiplier tensor (backward is then a single multiply too); faster than the select here
        return x * keep.to(x.dtype).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_bits_dropout(model: Any) -> int:
    """Replace every LoRA input dropout (PEFT's ``lora_dropout`` entries with p > 0) by ``BitsDropout``; returns how
    many were replaced."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                dropouts[name] = BitsDropout(dropout.p).train(dropout.training)
                replaced += 1
    return replaced


def drop_input_grad_hook(model: Any) -> bool:
    """Remove ``enable_input_require_grads()``'s hook from the (PEFT-wrapped) model; True if there was one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "_require_grads_hooks", None) and getattr(base, "_require_grads_hook", None) is None:
        return False
    base.disable_input_require_grads()
    return True


class BrochureTrainPlugin(BasePlugin):
    def get_input_args(self) -> str:
        return "stages.train_plugin.BrochureTrainArgs"

    def get_training_args(self, cfg):
        return {"use_cpu": True} if cfg.use_cpu else None

    def register(self, cfg):
        # Axolotl puts each process of a multi-process run on accelerator LOCAL_RANK (device_map
        # {"": rank}, set after every config hook); with no CUDA (the CPU rehearsal's 2 gloo processes)
        # loading fails: "Cannot access accelerator device". Load onto the CPU instead.
        import os

        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            from axolotl.loaders.model import ModelLoader

            original = ModelLoader._set_device_map_config

            def cpu_device_map(loader):
                original(loader)
                loader.model_kwargs["device_map"] = {"": "cpu"}

            ModelLoader._set_device_map_config = cpu_device_map

    def post_model_build(self, cfg, model):
        if not cfg.logits_on_labels_only:
            return
        if not (hasattr(model, "model") and hasattr(model, "lm_head")):
            log.warning("logits_on_labels_only: %s has no .model/.lm_head; using its own forward", type(model).__name__)
            return
        model.forward = labelled_positions_forward(model, detach_prompt=bool(cfg.detach_prompt))
        log.info("logits_on_labels_only: LM head computed only at labelled positions")
        if cfg.detach_prompt:
            log.info("detach_prompt: the prompt before the first answer runs without autograd")

    def post_model_load(self, cfg, model):
        if not cfg.gradient_checkpointing and drop_input_grad_hook(model):
            log.info("no gradient checkpointing: backward stops at the lowest LoRA layer (input-grad hook removed)")
        if cfg.fast_lora_dropout:
            log.info(
                "fast_lora_dropout: %d LoRA input dropouts draw 16 random bits per element", use_bits_dropout(model)
            )

    def add_callbacks_post_trainer(self, cfg, trainer):
        # No transformers model card (README.md) in the adapter folder: publish writes ours. Axolotl's call
        # crashed a 2-process run after training (make_markdown_table: KeyError 'Active (gib)', eval log
        # lines with different keys; found by the CPU rehearsal).
        trainer.create_model_card = lambda *args, **kwargs: None
        callback = _RunCallback(bool(cfg.final_eval), cfg.state_file)
        # rows that survived Axolotl's filtering (rows longer than sequence_len are dropped)
        for key, dataset in (("train_examples", trainer.train_dataset), ("eval_examples", trainer.eval_dataset)):
            if dataset is not None:
                callback.info[key] = len(dataset)
        return [callback]
