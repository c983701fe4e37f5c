"""The llm generator: an OpenAI-compatible endpoint or a local transformers model."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from stages.common import params as P
from stages.common.chat_api import ChatEndpoint
from stages.common.errors import UserError
from stages.common.korean import normalize
from stages.synthesize.questions import _record

log = logging.getLogger("synthesize")

# ------------------------------------------------------------------ llm generator
LLM_PROMPT = """다음은 제천 여행 브로셔의 한 부분입니다.

[문서]
{text}

이 문서만 보고 답할 수 있는 서로 다른 질문 {n}개를 만들어 주세요.
- 여행객이 실제로 물어볼 법한 자연스러운 한국어 존댓말 질문으로 쓰세요.
- 답은 문서에 있는 표현 그대로, 짧게(한 문장 이내) 쓰세요. 문서에 없는 내용은 절대 넣지 마세요.
- 질문에 답이 드러나면 안 됩니다.
- 사실형(주소, 전화, 요금, 시간, 개수 등)과 설명형(어떤 곳인지, 무엇을 할 수 있는지)을 섞으세요.
- 다음 JSON 배열만 출력하세요: [{{"question": "...", "answer": "...", "type": "factual 또는 descriptive"}}]"""


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
            items.append(
                {
                    "question": normalize(it["question"]),
                    "answer": normalize(it["answer"]),
                    "type": it.get("type") if it.get("type") in ("factual", "descriptive") else "factual",
                }
            )
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
        ids = self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
        ).to(self.lm.device)
        sample = self.temperature > 0
        out = self.lm.generate(
            ids,
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            **({"temperature": self.temperature} if sample else {}),
        )
        return self.tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def llm_candidates(chunk: dict[str, Any], client: Any, n: int) -> list[dict[str, Any]]:
    items = parse_llm_json(client.chat(LLM_PROMPT.format(text=chunk["text"], n=n)))
    return [
        _record(chunk, it["question"], it["answer"], it["type"], "llm", True, it["question"], generator="llm")
        for it in items
    ]
