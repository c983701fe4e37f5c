"""The llm generator: an OpenAI-compatible endpoint or a local transformers model."""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from typing import Any

from stages.common import params as P
from stages.common.chat_api import ChatEndpoint
from stages.common.errors import UserError
from stages.common.korean import normalize
from stages.synthesize.questions import _record, key_facts
from stages.synthesize.styles import KINDS, STYLES, has_shape

log = logging.getLogger("synthesize")

# ------------------------------------------------------------------ llm generator
# The same spec as the rules generator (styles.py): natural styles, a one-sentence answer that
# states the value, the bare value verbatim from the chunk, its shape. Same filters afterwards.
LLM_PROMPT = """다음은 여행 브로셔의 한 부분입니다.

[문서]
{text}

이 문서만 보고 답할 수 있는 서로 다른 질문 {n}개를 만들어 주세요.
- 여행객이 실제로 물어볼 법한 자연스러운 한국어 질문으로, 다음 말투(style)를 골고루 섞으세요:
  {styles}
  (예: "솔내군 군민카드가 있으면 솔내 목장 입장료를 할인받을 수 있나요? 얼마 할인되나요?", "아이랑 둘이 가는데 솔내
  별빛마을 체험이 괜찮을까요?", "솔내 향토관은 언제 쉬나요?", "반나절권과 하루권의 가격 차이는 얼마인가요?")
- answer: 사실을 담은 짧고 완결된 한국어 존댓말 한 문장 (예: "네, 솔내군 군민카드가 있으면 솔내 목장 입장료를 2,000원
  할인받을 수 있습니다."). yes_no 질문의 답도 값을 말해야 합니다. multi_part 질문의 답에는 두 사실이 모두 들어가야 합니다.
- answer_short: 답의 핵심 값만, 문서에 있는 표현 그대로 (예: "2,000원", "031-123-4567", "09:00~18:00").
- answer_kind: answer_short의 모양 — {kinds} 중 하나.
- 문서에 없는 내용은 절대 넣지 말고, 질문에 answer_short가 드러나면 안 됩니다.
- 다음 JSON 배열만 출력하세요: [{{"question": "...", "answer": "...", "answer_short": "...", "answer_kind": "...",
  "style": "...", "type": "factual 또는 descriptive"}}]"""


def parse_llm_json(text: str) -> list[dict[str, Any]]:
    """Items {question, answer, type?} from an LLM reply: code fences, prose around the JSON,
    a dict wrapping the list, or a list cut off mid-item are all tolerated."""
    text = re.sub(r"```(?:json)?", "", text)
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return []
    decoder = json.JSONDecoder()
    try:
        obj, _ = decoder.raw_decode(text[start:])
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        obj = next((v for v in obj.values() if isinstance(v, list)), [obj])
    if not isinstance(obj, list):  # truncated: salvage every complete {...} object
        obj = []
        for m in re.finditer(r"\{[^{}]*\}", text[start:]):
            try:
                obj.append(json.loads(m.group(0)))
            except json.JSONDecodeError:
                continue
    items = []
    for it in obj:
        if isinstance(it, dict) and isinstance(it.get("question"), str) and isinstance(it.get("answer"), str):
            item = {
                "question": normalize(it["question"]),
                "answer": normalize(it["answer"]),
                "type": it.get("type") if it.get("type") in ("factual", "descriptive") else "factual",
            }
            if isinstance(it.get("answer_short"), str) and it["answer_short"].strip():
                item["answer_short"] = normalize(it["answer_short"])
            if it.get("answer_kind") in KINDS and it.get("answer_kind") != "abstain":
                item["answer_kind"] = it["answer_kind"]
            if it.get("style") in STYLES and it.get("style") != "policy":
                item["style"] = it["style"]
            items.append(item)
    return items


class ChatClient:
    """One chat turn -> reply text, through an OpenAI-compatible endpoint or a local transformers model."""

    def __init__(self, llm: dict[str, Any]):
        self.backend = P.require(llm, "backend", str, "synthesize.llm")
        self.model = P.require(llm, "model", str, "synthesize.llm")
        self.temperature = float(P.require(llm, "temperature", (int, float), "synthesize.llm"))
        self.max_new_tokens = P.require(llm, "max_new_tokens", int, "synthesize.llm")
        self.timeout = P.require(llm, "timeout_s", int, "synthesize.llm")
        if self.backend == "openai":
            self.base_url = P.require(llm, "base_url", str, "synthesize.llm").rstrip("/")
            if not self.base_url:
                raise UserError(
                    "params: synthesize.llm.base_url is empty (an OpenAI-compatible endpoint, e.g. http://localhost:8000/v1)"
                )
            env = P.require(llm, "api_key_env", str, "synthesize.llm")
            self.endpoint = ChatEndpoint(
                self.base_url,
                self.model,
                os.environ.get(env, "") if env else "",
                self.timeout,
                what="synthesize.llm",
                hint="check synthesize.llm.base_url",
            )
        elif self.backend == "transformers":
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(self.model)
            self.lm = AutoModelForCausalLM.from_pretrained(self.model, torch_dtype="auto", device_map="auto")
        else:
            raise UserError(f"params: synthesize.llm.backend={self.backend!r} (known: openai, transformers)")

    def chat(self, prompt: str) -> str:
        if self.backend == "openai":
            return self.endpoint.complete(
                [{"role": "user", "content": prompt}], temperature=self.temperature, max_tokens=self.max_new_tokens
            )
        # transformers 5 returns a BatchEncoding here (not a tensor): ask for it explicitly and pass
        # input_ids + attention_mask (the rehearsal found generate(BatchEncoding) -> AttributeError).
        enc = self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.lm.device)
        sample = self.temperature > 0
        out = self.lm.generate(
            **enc,
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            **({"temperature": self.temperature} if sample else {}),
        )
        return self.tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def llm_candidates(chunk: dict[str, Any], client: Any, n: int, dropped: Counter | None = None) -> list[dict[str, Any]]:
    """The LLM's questions for one chunk as records of the rules generator's shape. A reply without
    answer_short keeps its answer as the bare value; a value of the wrong shape is dropped (shape filter)."""
    prompt = LLM_PROMPT.format(
        text=chunk["text"], n=n, styles=", ".join(s for s in STYLES if s != "policy"), kinds=", ".join(KINDS[:-1])
    )
    out = []
    for it in parse_llm_json(client.chat(prompt)):
        short = it.get("answer_short", it["answer"])
        kind = it.get("answer_kind") or ("text" if it["type"] == "descriptive" else "name")
        if not has_shape(short, kind):
            if dropped is not None:
                dropped["shape"] += 1
            continue
        rec = _record(
            chunk,
            it["question"],
            it["answer"],
            it["type"],
            "llm",
            True,
            it["question"],
            generator="llm",
            short=short,
            facts=key_facts(short, kind, ""),
            kind=kind,
            style=it.get("style", "direct"),
        )
        # the bare value verbatim, and the free-form sentence through grounding_min_share (numbers verbatim)
        rec["_parts"] = [(short, 0), (it["answer"], 0)]
        out.append(rec)
    return out
