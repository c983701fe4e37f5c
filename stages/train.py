"""Fine-tune a LoRA adapter on the SFT data with Axolotl.

    python -m stages.train --base models/base --data data/sft --out models/adapter \\
        --plots plots --metrics metrics/train.json [--params params.yaml]

1. Render the profile's base Axolotl YAML (``train.axolotl_config``) with the
   knobs from params.yaml ``train:`` and the paths into a resolved config,
   kept as ``<out>/axolotl.yaml`` (a DVC output: every experiment records its
   exact config). Paths in it are as given on the command line (repo-relative
   under DVC), so ``python -m axolotl.cli.train models/adapter/axolotl.yaml``
   from the repository root reproduces the run.
2. Run ``python -m axolotl.cli.train`` on it as a subprocess (telemetry off,
   offline per profile; its log streams to stderr), training into a temporary
   folder that replaces ``--out`` only on success.
3. Read the trainer's log history (written by stages/train_plugin.py) into
   ``<plots>/train_loss.csv`` (step,loss), ``<plots>/val_loss.csv``
   (step,val_loss) and ``--metrics``.

Validation loss is measured before the first step (Axolotl sets
``eval_on_start`` whenever ``eval_steps`` is set), every ``eval_steps`` and at
the last step (plugin ``final_eval``), so a drop below the first value is
visible in every run.

CPU cost (Gemma-3-270M, 2 cores, torch 2.13) is dominated by the 262k-vocabulary
LM head: stock transformers projects every prompt position onto the vocabulary.
The plugin's ``logits_on_labels_only`` computes it only at the answer tokens
(same loss and gradients, see tests/test_train.py): 17.5 -> 7.3 s per step of
4 x ~640 tokens with bf16 autocast (33 s in fp32 with full logits). Numbers in
axolotl/lora-cpu.yaml.
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from stages.common import env, io, params, precision
from stages.common.errors import UserError, run_cli
from stages.common.params_schema import SECTIONS, Train, fields

log = logging.getLogger("train")

REPO = Path(__file__).resolve().parents[1]

# params.yaml `train:` keys copied 1:1 into the Axolotl config (types and ranges: params_schema.Train;
# the other train keys steer the stage itself).
AXOLOTL_KNOBS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "learning_rate",
    "num_epochs",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "warmup_ratio",
    "eval_steps",
    "seed",
    "sequence_len",
    "max_steps",  # 0 = train num_epochs
)
# Keys the stage sets from paths; a base YAML must not set them either.
PATH_KEYS = (
    "base_model",
    "datasets",
    "test_datasets",
    "val_set_size",
    "chat_template",
    "output_dir",
    "dataset_prepared_path",
    "state_file",
    "bf16",  # from train.dtype
    "fp16",
    "peft_layers_to_transform",  # from train.lora_top_layers
)
PLUGIN = "stages.train_plugin.BrochureTrainPlugin"


# --------------------------------------------------------------------------- config


def check_train_params(train: Train) -> None:
    """Every key of params_schema.Train present, with its declared type and range (render_config is pure: a test
    or a caller may hand it a section built unchecked, ``params.make_section``), plus what a declaration cannot say."""
    params.check_keys(train, SECTIONS["train"], "train")
    missing = [key for key in fields(SECTIONS["train"]) if key not in train]
    if missing:
        raise UserError(f"params: missing train.{missing[0]}")
    if train.num_gpus > 1 and train.deepspeed_config and not Path(train.deepspeed_config).is_file():
        raise UserError(f"params: train.deepspeed_config {train.deepspeed_config} not found")
    if not train.lora_target_modules:
        raise UserError("params: train.lora_target_modules must be a non-empty list of module names")


def top_layers(num_layers: int, n_top: int) -> list[int] | None:
    """Indices of the top `n_top` decoder layers (None = all layers get LoRA).

    With LoRA only there, nothing below the lowest adapted layer needs a gradient, so
    backward stops early: the training cost falls with the share of layers left out.
    """
    if n_top <= 0 or n_top >= num_layers:
        return None
    return list(range(num_layers - n_top, num_layers))


def model_num_layers(base: Path) -> int:
    """Decoder layers of a model folder (Gemma 3 multimodal configs nest them in text_config)."""
    cfg = io.read_json(base / "config.json")
    n = cfg.get("num_hidden_layers") or (cfg.get("text_config") or {}).get("num_hidden_layers")
    if not isinstance(n, int) or n <= 0:
        raise UserError(f"{base}/config.json: no num_hidden_layers (needed by train.lora_top_layers)")
    return n


def load_base_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"params: train.axolotl_config {path} not found")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    owned = sorted(set(cfg) & (set(AXOLOTL_KNOBS) | set(PATH_KEYS)))
    if owned:
        raise UserError(
            f"{path}: sets {owned[0]}, which comes from params.yaml train: or the command line - remove it there"
        )
    return cfg


def _dataset(path: Path) -> dict[str, Any]:
    return {
        "path": str(path),
        "ds_type": "json",
        "split": "train",  # a json file loads as a single 'train' split
        "type": "chat_template",
        "field_messages": "messages",
        "roles_to_train": ["assistant"],
        "train_on_eos": "turn",  # the EOS that ends each assistant turn carries a label
    }


def render_config(
    base_cfg: dict[str, Any],
    train: Train,
    *,
    base_model: Path,
    data: Path,
    output_dir: Path,
    prepared_dir: Path | None = None,
    state_file: Path | None = None,
    dtype: str = "float32",
    num_layers: int | None = None,
) -> dict[str, Any]:
    """The resolved Axolotl config: base YAML + params knobs + paths (pure function).

    `dtype` is the resolved precision (``precision.choose_dtype`` of train.dtype), `num_layers`
    the base model's decoder depth (needed when train.lora_top_layers > 0).
    """
    check_train_params(train)
    cfg = copy.deepcopy(base_cfg)
    for key in AXOLOTL_KNOBS:
        cfg[key] = getattr(train, key)
    if dtype not in ("bfloat16", "float32", "float16"):
        raise UserError(f"train: resolved dtype must be bfloat16, float32 or float16, got {dtype!r}")
    cfg["bf16"] = dtype == "bfloat16"  # Axolotl loads the weights in bf16 and autocasts
    cfg["fp16"] = dtype == "float16"  # neither: fp32 weights and math
    if train.lora_top_layers:
        if num_layers is None:
            raise UserError("train.lora_top_layers > 0 needs the base model's number of layers")
        layers = top_layers(num_layers, train.lora_top_layers)
        if layers is not None:
            cfg["peft_layers_to_transform"] = layers
    cfg["lora_target_modules"] = list(train.lora_target_modules)
    if not train.max_steps:
        del cfg["max_steps"]  # Axolotl: absent = run num_epochs
    cfg["eval_batch_size"] = train.micro_batch_size
    cfg["base_model"] = str(base_model)
    cfg["chat_template"] = "tokenizer_default"  # the template models/base ships
    cfg["datasets"] = [_dataset(data / "train.jsonl")]
    cfg["test_datasets"] = [_dataset(data / "validation.jsonl")]
    cfg["val_set_size"] = 0
    cfg["output_dir"] = str(output_dir)
    if prepared_dir is not None:
        cfg["dataset_prepared_path"] = str(prepared_dir)
    plugins = list(cfg.get("plugins") or [])
    if PLUGIN not in plugins:
        plugins.append(PLUGIN)
    cfg["plugins"] = plugins
    cfg["logits_on_labels_only"] = train.logits_on_labels_only
    if train.detach_prompt and not train.logits_on_labels_only:
        raise UserError("train.detach_prompt needs train.logits_on_labels_only: true (it is part of that forward)")
    if train.detach_prompt:  # only when on: the rendered config of a run without it stays as before
        cfg["detach_prompt"] = True
    if train.num_gpus > 1 and train.deepspeed_config:
        cfg["deepspeed"] = train.deepspeed_config
    if state_file is not None:
        cfg["state_file"] = str(state_file)
    return cfg


def dump_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=False)


# --------------------------------------------------------------------------- inputs


def check_inputs(base: Path, data: Path) -> int:
    if not (base / "config.json").is_file():
        raise UserError(f"{base}: not a model folder (no config.json); run stages.prepare_model first")
    n_train = 0
    for name in ("train.jsonl", "validation.jsonl"):
        path = data / name
        if not path.is_file():
            raise UserError(f"{path} not found; run the sft stage first")
        rows = sum(1 for line in path.open(encoding="utf-8") if line.strip())
        if rows == 0:
            raise UserError(f"{path} is empty")
        if name == "train.jsonl":
            n_train = rows
    return n_train


# --------------------------------------------------------------------------- run


def axolotl_command(cfg_path: Path, num_gpus: int) -> list[str]:
    """One process on one device, or `accelerate launch` with one process per GPU."""
    train_cmd = ["-m", "axolotl.cli.train", str(cfg_path)]
    if num_gpus == 1:
        return [sys.executable, *train_cmd]
    # --multi_gpu: without it (and without an accelerate config file) `accelerate launch` falls back to its
    # simple launcher, which starts ONE process whatever --num_processes says unless it sees >1 CUDA device
    # (found by the CPU rehearsal: world_size 1). With it, torchrun starts N processes (gloo on CPU).
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_gpus)]
    return [sys.executable, *launch, *train_cmd]


def require_deepspeed(train: Train) -> None:
    """A multi-GPU run with a DeepSpeed config needs the deepspeed package: say so before Axolotl starts."""
    import importlib.util

    if train.num_gpus > 1 and train.deepspeed_config and importlib.util.find_spec("deepspeed") is None:
        raise UserError(
            "train.num_gpus > 1 with a deepspeed_config needs the deepspeed package "
            "(WITH_DEEPSPEED=1 bash scripts/runpod_setup.sh, or set train.deepspeed_config: '' for plain DDP)"
        )


def run_axolotl(cfg_path: Path, cwd: Path, num_gpus: int = 1) -> None:
    run_env = dict(os.environ)
    # Measured: with OMP_THREAD_LIMIT=1 inherited (e.g. from a Tesseract setting), CPU training
    # produced loss 0 / grad_norm NaN from the first step. Let torch pick its own thread count.
    run_env.pop("OMP_THREAD_LIMIT", None)
    # stages.train_plugin must be importable by the Axolotl process.
    run_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), run_env.get("PYTHONPATH", "")) if p)
    cmd = axolotl_command(cfg_path, num_gpus)
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, env=run_env, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if proc.returncode != 0:
        raise UserError(f"axolotl training failed (exit {proc.returncode}); see its log above")


def read_history(state_file: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if not state_file.is_file():
        raise UserError(f"axolotl finished without a trainer state ({state_file.name}); was the plugin loaded?")
    state = io.read_json(state_file)
    return state.get("log_history", []), {**state.get("brochure_run_info", {}), "global_step": state.get("global_step")}


def loss_rows(history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    train = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
    val: dict[int, float] = {}
    for h in history:
        if "eval_loss" in h:
            val[int(h["step"])] = float(h["eval_loss"])  # last wins if a step was evaluated twice
    return train, sorted(val.items())


def write_csv(path: Path, header: tuple[str, str], rows: list[tuple[int, float]]) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for step, value in rows:
            w.writerow([step, f"{value:.6f}"])


def summarise(
    history: list[dict[str, Any]], info: dict[str, Any], wall: float, rss_mb: float, n_train_rows: int
) -> dict[str, Any]:
    train, val = loss_rows(history)
    if not train:
        raise UserError("training logged no loss (0 steps?): check max_steps/num_epochs and that rows fit sequence_len")
    if not all(math.isfinite(v) for _, v in train + val):
        raise UserError("training produced a non-finite loss; lower learning_rate or check the data")
    tokens = [h for h in history if "tokens/total" in h]
    total_tokens = int(tokens[-1]["tokens/total"]) if tokens else None
    trainable = int(tokens[-1]["tokens/trainable"]) if tokens else None
    steps = int(info.get("global_step") or train[-1][0])
    step_seconds = info.get("step_seconds")  # optimizer steps only, without evaluation
    eval_seconds = sum(float(h.get("eval_runtime", 0.0)) for h in history)
    kept = info.get("train_examples")
    return {
        "train_loss_first": train[0][1],
        "train_loss_last": train[-1][1],
        "val_loss_first": val[0][1] if val else None,
        "val_loss_last": val[-1][1] if val else None,
        "val_loss_min": min(v for _, v in val) if val else None,
        "steps": steps,
        "train_examples": kept if kept is not None else n_train_rows,
        "train_rows_dropped": n_train_rows - kept if kept is not None else None,
        "val_examples": info.get("eval_examples"),
        "tokens": total_tokens,  # token slots seen in training (padding included)
        "trained_tokens": trainable,  # tokens that carried a label (answers + EOS)
        "wall_seconds": round(wall, 1),  # the whole stage: start-up, data prep, training, evals, save
        "train_seconds": round(float(info.get("train_seconds") or wall), 1),  # trainer.train(): steps + evals
        "eval_seconds": round(eval_seconds, 1),
        "seconds_per_step": round(step_seconds / steps, 2) if step_seconds and steps else None,
        "tokens_per_second": round(total_tokens / step_seconds, 1) if total_tokens and step_seconds else None,
        "peak_rss_mb": round(rss_mb),
    }


def portable_base_path(adapter_config: Path, base: Path) -> None:
    """Record the base model as given on the command line (repo-relative), not the absolute path Axolotl saw."""
    cfg = io.read_json(adapter_config)
    cfg["base_model_name_or_path"] = str(base)
    io.write_json(adapter_config, cfg)


def merge_adapter(base: Path, adapter: Path, out: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def train(args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    cfg_train = p["train"]
    check_train_params(cfg_train)
    n_train = check_inputs(args.base, args.data)
    require_deepspeed(cfg_train)
    base_cfg = load_base_config(cfg_train.axolotl_config)
    device = "cuda" if p["machine"].requires_cuda else "cpu"
    dtype, why = precision.choose_dtype(cfg_train.dtype, device)
    log.info("training dtype %s (%s)", dtype, why)
    shape = {"dtype": dtype, "num_layers": model_num_layers(args.base) if cfg_train.lora_top_layers else None}
    recorded = render_config(base_cfg, cfg_train, base_model=args.base, data=args.data, output_dir=args.out, **shape)

    t0 = time.perf_counter()
    with io.atomic_dir(args.out) as tmp, tempfile.TemporaryDirectory(prefix="axolotl-") as work:
        work = Path(work)
        state_file = work / "trainer_state.json"
        run_cfg = render_config(
            base_cfg,
            cfg_train,
            base_model=args.base.resolve(),
            data=args.data.resolve(),
            output_dir=tmp.resolve(),
            prepared_dir=work / "prepared",
            state_file=state_file,
            **shape,
        )
        cfg_path = work / "axolotl.yaml"
        cfg_path.write_text(dump_yaml(run_cfg), encoding="utf-8")
        run_axolotl(cfg_path, cwd=Path.cwd(), num_gpus=cfg_train.num_gpus)
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux

        for name in ("adapter_model.safetensors", "adapter_config.json"):
            if not (tmp / name).is_file():
                raise UserError(f"axolotl finished but wrote no {name}")
        for junk in tmp.glob("checkpoint-*"):
            shutil.rmtree(junk)
        (tmp / "debug.log").unlink(missing_ok=True)  # Axolotl's copy of its log: timestamps, not a result
        portable_base_path(tmp / "adapter_config.json", args.base)
        history, info = read_history(state_file)
        (tmp / "axolotl.yaml").write_text(dump_yaml(recorded), encoding="utf-8")
        metrics = summarise(history, info, wall, rss_mb, n_train)
        metrics["dtype"], metrics["dtype_reason"] = dtype, why
        metrics["lora_layers"] = recorded.get("peft_layers_to_transform", "all")
        if metrics["train_rows_dropped"]:
            log.warning(
                "%d of %d training rows were longer than sequence_len=%d and dropped by Axolotl",
                metrics["train_rows_dropped"],
                n_train,
                cfg_train.sequence_len,
            )
        if cfg_train.merge_adapter:
            merge_adapter(args.base, tmp, tmp / "merged")

    train_rows, val_rows = loss_rows(history)
    write_csv(args.plots / "train_loss.csv", ("step", "loss"), train_rows)
    write_csv(args.plots / "val_loss.csv", ("step", "val_loss"), val_rows)
    io.write_json(args.metrics, metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, type=Path, help="base model folder (stages.prepare_model)")
    ap.add_argument("--data", required=True, type=Path, help="folder with train.jsonl and validation.jsonl")
    ap.add_argument("--out", required=True, type=Path, help="adapter folder to write")
    ap.add_argument("--plots", required=True, type=Path, help="folder for train_loss.csv and val_loss.csv")
    ap.add_argument("--metrics", required=True, type=Path, help="metrics json to write")
    ap.add_argument("--params", default=params.DEFAULT_PARAMS, type=Path)
    args = ap.parse_args(argv)

    p = params.load(args.params, "train", "machine")
    machine = p["machine"]
    env.setup_env(offline=machine.offline)
    env.check_machine({**machine, "name": p["profile"], "offline": True})  # models are local: no hub needed
    m = train(args, p)
    log.info(
        "trained %d steps on %s examples in %.0fs (%.1f s/step): train loss %.3f -> %.3f, val loss %s -> %s",
        m["steps"],
        m["train_examples"],
        m["wall_seconds"],
        m["seconds_per_step"] or 0,
        m["train_loss_first"],
        m["train_loss_last"],
        _fmt(m["val_loss_first"]),
        _fmt(m["val_loss_last"]),
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    run_cli(main)
