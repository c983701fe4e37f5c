"""stages.train: config rendering, EOS labelling as Axolotl tokenises, a real tiny Axolotl run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from stages import train as stage
from stages.common import params
from stages.common.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def repo_train_params(profile: str = "cpu") -> dict:
    raw = params.load_raw(REPO / "params.yaml")
    raw["profile"] = profile
    return params.section(raw, "train")


def render(train: dict, base_cfg: dict | None = None) -> dict:
    base_cfg = stage.load_base_config(REPO / train["axolotl_config"]) if base_cfg is None else base_cfg
    return stage.render_config(
        base_cfg,
        train,
        base_model=Path("models/base"),
        data=Path("data/sft"),
        output_dir=Path("models/adapter"),
        num_layers=18,  # Gemma-3-270M's depth (train.lora_top_layers needs it)
    )


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("profile", ["cpu", "runpod"])
def test_repo_params_render_for_every_profile(profile):
    train = repo_train_params(profile)
    cfg = render(train)
    assert cfg["base_model"] == "models/base"
    assert cfg["datasets"][0]["path"] == "data/sft/train.jsonl"
    assert cfg["test_datasets"][0]["path"] == "data/sft/validation.jsonl"
    for ds in cfg["datasets"] + cfg["test_datasets"]:
        assert ds["type"] == "chat_template"
        assert ds["field_messages"] == "messages"
        assert ds["roles_to_train"] == ["assistant"]
        assert ds["train_on_eos"] == "turn"
    assert cfg["chat_template"] == "tokenizer_default"
    assert cfg["output_dir"] == "models/adapter"
    assert stage.PLUGIN in cfg["plugins"]
    assert cfg["eval_steps"] == train["eval_steps"]
    # the recorded YAML round-trips
    assert yaml.safe_load(stage.dump_yaml(cfg)) == cfg


def test_params_change_shows_up_in_resolved_yaml():
    train = repo_train_params()
    a = render(train.replace(lora_r=8, learning_rate=1e-4, sequence_len=512))
    b = render(train.replace(lora_r=32, learning_rate=3e-4, sequence_len=768))
    assert (a["lora_r"], a["learning_rate"], a["sequence_len"]) == (8, 1e-4, 512)
    assert (b["lora_r"], b["learning_rate"], b["sequence_len"]) == (32, 3e-4, 768)
    assert "lora_r: 32" in stage.dump_yaml(b)


def test_multi_gpu_renders_deepspeed_and_launches_one_process_per_gpu():
    train = repo_train_params("runpod")
    assert "deepspeed" not in render(train)  # one GPU: plain single process
    multi = train.replace(num_gpus=4)
    assert render(multi)["deepspeed"] == "axolotl/deepspeed/zero2.json"
    cmd = stage.axolotl_command(Path("cfg.yaml"), 4)
    assert cmd[1:] == [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "4",
        "-m",
        "axolotl.cli.train",
        "cfg.yaml",
    ]
    assert stage.axolotl_command(Path("cfg.yaml"), 1)[1:] == ["-m", "axolotl.cli.train", "cfg.yaml"]


def test_max_steps_zero_means_epochs():
    train = repo_train_params()
    assert "max_steps" not in render(train.replace(max_steps=0))
    assert render(train.replace(max_steps=7))["max_steps"] == 7


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lora_rank": 8}, "unknown key train.lora_rank"),
        ({"lora_r": "8"}, "train.lora_r must be int"),
        ({"lora_r": True}, "train.lora_r must be int"),
        ({"micro_batch_size": 0}, "train.micro_batch_size must be > 0"),
        ({"max_steps": -1}, "train.max_steps must be >= 0"),
        ({"lora_target_modules": []}, "lora_target_modules"),
        ({"num_gpus": 0}, "train.num_gpus must be >= 1"),
        ({"num_gpus": 2, "deepspeed_config": "nope.json"}, "deepspeed_config nope.json not found"),
    ],
)
def test_bad_train_params_are_user_errors(change, message):
    with pytest.raises(UserError, match=message):
        render(repo_train_params().replace(**change), base_cfg={})


def test_missing_train_key_is_a_user_error():
    train = params.make_section("train", {k: v for k, v in repo_train_params().items() if k != "learning_rate"})
    with pytest.raises(UserError, match="missing train.learning_rate"):
        render(train, base_cfg={})


def test_base_config_may_not_set_params_owned_keys(tmp_path):
    bad = tmp_path / "base.yaml"
    bad.write_text("adapter: lora\nlearning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(UserError, match="sets learning_rate"):
        stage.load_base_config(bad)
    with pytest.raises(UserError, match="not found"):
        stage.load_base_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("profile", ["cpu", "runpod"])
def test_rendered_config_passes_axolotl_validation(profile):
    """Axolotl's own schema accepts what we render (keys spelled right, plugin args known)."""
    from axolotl.utils.config import prepare_plugins, validate_config
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault(render(repo_train_params(profile)))
    prepare_plugins(cfg)
    gpu = profile == "runpod"
    caps = {"bf16": gpu, "fp8": False, "n_gpu": 1, "n_node": 1, "tf32": gpu}
    out = validate_config(cfg, capabilities=caps, env_capabilities={"torch_version": "2.13.0"})
    assert out["logits_on_labels_only"] is True and out["final_eval"] is True
    assert out["adapter"] == ("qlora" if gpu else "lora")
    if not gpu:
        assert out["use_cpu"] is True
        assert not any(out[k] for k in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel")), "Triton needs CUDA"


def test_detach_prompt_is_rendered_only_when_on_and_needs_labelled_logits():
    from axolotl.utils.config import prepare_plugins, validate_config
    from axolotl.utils.dict import DictDefault

    train = repo_train_params()
    assert "detach_prompt" not in render(train.replace(detach_prompt=False))  # off: the config as before
    cfg = DictDefault(render(train.replace(detach_prompt=True)))
    prepare_plugins(cfg)
    caps = {"bf16": False, "fp8": False, "n_gpu": 1, "n_node": 1, "tf32": False}
    assert (
        validate_config(cfg, capabilities=caps, env_capabilities={"torch_version": "2.13.0"})["detach_prompt"] is True
    )
    with pytest.raises(UserError, match="detach_prompt needs train.logits_on_labels_only"):
        render(train.replace(detach_prompt=True, logits_on_labels_only=False))


@pytest.mark.parametrize("dtype, bf16, fp16", [("bfloat16", True, False), ("float32", False, False)])
def test_resolved_dtype_is_rendered_and_base_configs_leave_it_to_params(dtype, bf16, fp16):
    train = repo_train_params()
    cfg = stage.render_config(
        stage.load_base_config(REPO / train["axolotl_config"]), train, base_model=Path("b"), data=Path("d"),
        output_dir=Path("o"), dtype=dtype, num_layers=18,
    )  # fmt: skip
    assert (cfg["bf16"], cfg["fp16"]) == (bf16, fp16)
    for profile in ("cpu", "runpod"):
        base = yaml.safe_load((REPO / repo_train_params(profile)["axolotl_config"]).read_text(encoding="utf-8"))
        assert "bf16" not in base and "fp16" not in base
    with pytest.raises(UserError, match="train.dtype must be one of"):
        render(train.replace(dtype="int8"), base_cfg={})


def test_lora_top_layers_renders_the_top_layer_indices():
    train = repo_train_params().replace(lora_top_layers=6)
    kw = {"base_model": Path("b"), "data": Path("d"), "output_dir": Path("o")}
    cfg = stage.render_config({}, train, num_layers=18, **kw)
    assert cfg["peft_layers_to_transform"] == list(range(12, 18))
    assert "peft_layers_to_transform" not in stage.render_config({}, train.replace(lora_top_layers=0), **kw)
    assert "peft_layers_to_transform" not in stage.render_config(
        {}, train.replace(lora_top_layers=18), num_layers=18, **kw
    )
    with pytest.raises(UserError, match="number of layers"):
        stage.render_config({}, train, **kw)
    with pytest.raises(UserError, match="lora_top_layers must be >= 0"):
        render(train.replace(lora_top_layers=-1), base_cfg={})


def test_model_num_layers_reads_nested_text_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"num_hidden_layers": 26}}), encoding="utf-8")
    assert stage.model_num_layers(tmp_path) == 26
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="num_hidden_layers"):
        stage.model_num_layers(tmp_path)


def test_auto_precision_follows_the_hardware():
    from stages.common.precision import choose_dtype

    assert choose_dtype("auto", "cpu", flags={"avx512f", "avx512_bf16"}) == (
        "bfloat16",
        "auto: CPU has native bf16 (avx512_bf16)",
    )
    dtype, why = choose_dtype("auto", "cpu", flags={"avx512f", "avx2"})
    assert dtype == "float32" and "without native bf16" in why
    assert choose_dtype("float32", "cpu", flags={"amx_bf16"}) == ("float32", "forced by params (float32)")
    assert choose_dtype("auto", "cuda", cuda_has_bf16=True)[0] == "bfloat16"
    assert choose_dtype("auto", "cuda", cuda_has_bf16=False)[0] == "float32"
    with pytest.raises(ValueError):
        choose_dtype("fp8")


def test_cpu_flags_parse_proc_cpuinfo(tmp_path):
    from stages.common.precision import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\nprocessor\t: 1\n", encoding="utf-8")
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()


# ----------------------------------------------------------------------------- EOS labels


def tokenise_like_axolotl(tokenizer, row: dict, sequence_len: int = 2048) -> dict:
    """Tokenise one row with Axolotl's own chat_template strategy and our dataset config."""
    from axolotl.prompt_strategies.chat_template import load
    from axolotl.utils.dict import DictDefault

    ds_cfg = render(repo_train_params(), base_cfg={})["datasets"][0]
    cfg = DictDefault({"chat_template": "tokenizer_default", "sequence_len": sequence_len, "train_on_inputs": False})
    strategy = load(tokenizer, cfg, ds_cfg)
    return strategy.tokenize_prompt(row)


def assert_only_answer_and_eos_trained(tokenizer, row: dict, out: dict) -> None:
    ids, labels = out["input_ids"], out["labels"]
    assert len(ids) == len(labels)
    eos = tokenizer.eos_token_id
    eos_positions = [i for i, t in enumerate(ids) if t == eos]
    assert len(eos_positions) == 1, "exactly one EOS: the end of the assistant turn"
    e = eos_positions[0]
    assert labels[e] == eos, "the assistant's EOS must carry a label so the model learns to stop"
    # the prompt (system + user turn + '<start_of_turn>model\n') carries no label
    prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert ids[:n_prompt] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert all(lab == -100 for lab in labels[:n_prompt])
    # the answer tokens are trained; nothing after the EOS is
    assert all(lab == tok for lab, tok in zip(labels[n_prompt : e + 1], ids[n_prompt : e + 1], strict=True))
    assert all(lab == -100 for lab in labels[e + 1 :])
    answer = tokenizer.decode(ids[n_prompt:e])
    assert answer.strip() == row["messages"][-1]["content"]


def test_eos_label_tiny_tokenizer(tiny_tokenizer):
    from conftest import sft_rows

    row = sft_rows(1)[0]
    out = tokenise_like_axolotl(tiny_tokenizer, row)
    assert_only_answer_and_eos_trained(tiny_tokenizer, row, out)


@pytest.mark.skipif(not (REPO / "models/base/tokenizer.json").is_file(), reason="models/base not prepared")
def test_eos_label_real_base_tokenizer():
    from conftest import sft_rows
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(REPO / "models/base")
    row = sft_rows(1)[0]
    out = tokenise_like_axolotl(tokenizer, row)
    assert_only_answer_and_eos_trained(tokenizer, row, out)
    assert tokenizer.convert_ids_to_tokens(out["input_ids"][:2]) == ["<bos>", "<start_of_turn>"]


# ----------------------------------------------------------------------------- a real run


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_tiny_axolotl_run_through_the_stage(tmp_path, tiny_model_dir, tiny_sft_dir, monkeypatch):
    raw = params.load_raw(REPO / "params.yaml")
    raw["profile"] = "cpu"
    raw["profiles"]["cpu"]["train"]["axolotl_config"] = str(REPO / raw["profiles"]["cpu"]["train"]["axolotl_config"])
    small = {"sequence_len": 256, "max_steps": 3, "micro_batch_size": 2, "gradient_accumulation_steps": 1}
    small |= {"eval_steps": 2, "lora_r": 4, "lora_alpha": 8, "merge_adapter": True}
    small |= {"dtype": "float32", "lora_top_layers": 1}  # the tiny model has 2 layers: LoRA on the top one
    for key, value in small.items():  # each key lives either in train: or in the profile
        where = raw["train"] if key in raw["train"] else raw["profiles"]["cpu"]["train"]
        where[key] = value
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    for key in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "DO_NOT_TRACK",
        "AXOLOTL_DO_NOT_TRACK",
    ):
        monkeypatch.setenv(key, "1")
    monkeypatch.chdir(tmp_path)

    out, plots, metrics = tmp_path / "adapter", tmp_path / "plots", tmp_path / "metrics" / "train.json"
    stage.main(
        [
            "--base", str(tiny_model_dir), "--data", str(tiny_sft_dir), "--out", str(out),
            "--plots", str(plots), "--metrics", str(metrics), "--params", str(params_file),
        ]
    )  # fmt: skip

    for name in ("adapter_model.safetensors", "adapter_config.json", "axolotl.yaml"):
        assert (out / name).is_file(), name
    assert not list(tmp_path.glob(".adapter.tmp-*")), "temp dir left behind"
    recorded = yaml.safe_load((out / "axolotl.yaml").read_text(encoding="utf-8"))
    assert recorded["max_steps"] == 3 and recorded["lora_r"] == 4
    assert recorded["output_dir"] == str(out)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    assert (out / "merged" / "model.safetensors").is_file() and (out / "merged" / "tokenizer.json").is_file()

    m = json.loads(metrics.read_text(encoding="utf-8"))
    train_rows = read_csv(plots / "train_loss.csv")
    val_rows = read_csv(plots / "val_loss.csv")
    assert m["steps"] == 3
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) for r in train_rows)
    steps = [int(r["step"]) for r in val_rows]
    assert steps[0] == 0 and steps[-1] == 3, "val loss before training and at the last step"
    assert all(math.isfinite(float(r["val_loss"])) for r in val_rows)
    assert m["train_examples"] == 16 and m["train_rows_dropped"] == 0
    assert m["val_loss_first"] == pytest.approx(float(val_rows[0]["val_loss"]), abs=1e-5)
    for key in ("train_loss_first", "train_loss_last", "val_loss_last", "wall_seconds", "peak_rss_mb", "tokens"):
        assert m[key] is not None and math.isfinite(m[key]), key
    assert (m["dtype"], m["dtype_reason"], m["lora_layers"]) == ("float32", "forced by params (float32)", [1])
    assert recorded["bf16"] is False and recorded["peft_layers_to_transform"] == [1]
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as fh:
        layers = {k.split("layers.")[1].split(".")[0] for k in fh.keys()}
    assert layers == {"1"}, "LoRA weights only in the top layer"


# ----------------------------------------------------------------------------- the plugin's loss


def test_labelled_positions_loss_equals_full_vocab_loss(tiny_model_dir):
    """logits_on_labels_only must give the same loss and gradients as the stock forward."""
    import torch
    from transformers import AutoModelForCausalLM

    from stages.train_plugin import labelled_positions_forward

    torch.manual_seed(0)
    ids = torch.randint(5, 300, (2, 24))
    labels = ids.clone()
    labels[:, :15] = -100  # prompt
    labels[1, 20:] = -100  # padding
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0

    def run(patched: bool, **kw):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        if patched:
            model.forward = labelled_positions_forward(model)
        out = model(input_ids=ids, attention_mask=mask, labels=labels, **kw)
        out.loss.backward()
        return out.loss.detach(), model.model.layers[0].mlp.up_proj.weight.grad

    for kw in ({}, {"num_items_in_batch": torch.tensor(7)}):
        ref_loss, ref_grad = run(False, **kw)
        loss, grad = run(True, **kw)
        torch.testing.assert_close(loss, ref_loss)
        torch.testing.assert_close(grad, ref_grad)
    # without labels (generation) the stock forward runs and returns logits
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.forward = labelled_positions_forward(model)
    assert model(input_ids=ids).logits.shape == (2, 24, model.config.vocab_size)


def test_detached_prompt_gives_the_same_loss_and_cuts_only_the_gradient_through_the_prompt(tiny_model_dir):
    """detach_prompt: the unlabelled prefix runs without autograd (past the sliding window of 64 here, with padding):
    the same loss, the same gradient for weights whose prompt-side output cannot reach a labelled position (the top
    layer's MLP), a different one below (the prompt's keys/values carried gradient there)."""
    import torch
    from transformers import AutoModelForCausalLM

    from stages.train_plugin import labelled_positions_forward, prompt_split

    torch.manual_seed(0)
    ids = torch.randint(5, 300, (2, 120))
    labels = ids.clone()
    labels[0, :95] = -100  # row 0's answer starts at 95, row 1's at 100
    labels[1, :100] = -100
    labels[1, 112:] = -100  # padding
    mask = torch.ones_like(ids)
    mask[1, 112:] = 0
    assert prompt_split(labels) == 94  # position 94 predicts the first label (95)
    assert prompt_split(torch.full((2, 8), -100)) == 0

    def run(detach: bool):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        model.forward = labelled_positions_forward(model, detach_prompt=detach)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        layers = model.model.layers
        return out.loss.detach(), layers[-1].mlp.up_proj.weight.grad, layers[0].self_attn.k_proj.weight.grad

    full_loss, full_top, full_low = run(False)
    loss, top, low = run(True)
    torch.testing.assert_close(loss, full_loss)
    torch.testing.assert_close(top, full_top)
    assert not torch.allclose(low, full_low, rtol=1e-3, atol=1e-6)
    # without autograd (evaluation) the split is skipped: the full forward
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.forward = labelled_positions_forward(model, detach_prompt=True)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).loss, full_loss)


def test_backward_stops_at_the_lowest_lora_layer_with_the_same_lora_gradients(tiny_model_dir):
    """Axolotl's enable_input_require_grads() hook makes backward run through the frozen layers below the LoRA
    layers; the plugin removes it (no gradient checkpointing): same LoRA gradients, no graph below them."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stages.train_plugin import drop_input_grad_hook

    torch.manual_seed(0)
    ids = torch.randint(5, 300, (2, 16))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    top = model.config.num_hidden_layers - 1
    model.enable_input_require_grads()  # what Axolotl's load_adapter does
    model = get_peft_model(
        model,
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], layers_to_transform=[top], init_lora_weights=False),
    )
    below = []
    model.get_base_model().model.layers[0].register_forward_hook(lambda m, i, out: below.append(out[0].requires_grad))

    def lora_grads():
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    with_hook = lora_grads()
    assert drop_input_grad_hook(model) and not drop_input_grad_hook(model)
    without = lora_grads()
    assert below == [True, False]  # the lowest layer's output no longer carries a graph
    assert with_hook.keys() == without.keys() and all(f".{top}." in n for n in without)
    for name, grad in without.items():
        torch.testing.assert_close(grad, with_hook[name])


def test_bits_dropout_is_inverted_dropout_with_probability_p():
    import torch

    from stages.train_plugin import BitsDropout

    drop = BitsDropout(0.05)
    assert drop.drop_levels == 3277 and drop.p == pytest.approx(0.05, abs=1 / 65536)
    x = torch.rand(1000, 1000) + 0.5  # no zeros: a zero output means dropped
    torch.manual_seed(0)
    y = drop(x)
    dropped = y == 0
    share = dropped.float().mean().item()
    assert abs(share - drop.p) < 4 * math.sqrt(drop.p * (1 - drop.p) / x.numel())  # binomial, 4 sigma
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - drop.p))
    assert abs(y.mean().item() / x.mean().item() - 1) < 2e-3  # expectation kept
    rows, cols = dropped.float().mean(1), dropped.float().mean(0)  # no lane or position pattern
    assert rows.max() < 0.1 and cols.max() < 0.1 and rows.min() > 0.01 and cols.min() > 0.01
    torch.manual_seed(0)
    assert torch.equal(drop(x), y), "seeded like every torch draw"
    assert not torch.equal(drop(x), y)
    x.requires_grad_(True)
    out = drop(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() / (1 - drop.p))
    half = x.detach().bfloat16()
    torch.manual_seed(0)
    y_half = drop(half)
    assert y_half.dtype == torch.bfloat16
    torch.testing.assert_close(y_half, (half.float() * (y != 0) / (1 - drop.p)).bfloat16(), rtol=0, atol=0)
    half.requires_grad_(True)
    upstream = torch.randn(x.shape).bfloat16()
    torch.manual_seed(0)
    (drop(half) * upstream).sum().backward()  # the gradient is rounded once from fp32, like the forward
    torch.testing.assert_close(half.grad, (upstream.float() * (y != 0) / (1 - drop.p)).bfloat16(), rtol=0, atol=0)
    torch.manual_seed(0)  # fp16 takes the same branch: the same mask, rounded once to fp16
    expected_fp16 = (x.detach().half().float() * (y != 0) / (1 - drop.p)).half()
    torch.testing.assert_close(drop(x.detach().half()), expected_fp16, rtol=0, atol=0)
    drop.eval()
    assert drop(x) is x
    assert BitsDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="must be in"):
        BitsDropout(1.0)
    with pytest.raises(ValueError, match="rounds to 1"):  # within 1/131072 of 1: no element would be kept
        BitsDropout(0.999995)
    assert BitsDropout(0.99998).drop_levels == BitsDropout.LEVELS - 1


def test_use_bits_dropout_replaces_every_lora_dropout(tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stages.train_plugin import BitsDropout, use_bits_dropout

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    model = get_peft_model(model, config).eval()
    ids = torch.randint(5, 300, (1, 12))
    before = model(input_ids=ids).logits
    layers = model.config.num_hidden_layers
    assert use_bits_dropout(model) == 3 * layers and use_bits_dropout(model) == 0
    drops = [m for m in model.modules() if isinstance(m, BitsDropout)]
    assert len(drops) == 3 * layers and all(d.p == pytest.approx(0.1, abs=1 / 65536) for d in drops)
    torch.testing.assert_close(model(input_ids=ids).logits, before)  # eval: no dropout either way
    model.train()
    torch.manual_seed(1)
    assert not torch.equal(model(input_ids=ids).logits, before)  # training: masks are drawn
