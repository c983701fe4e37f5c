"""Optional LLM judge: correctness 0/1 + a reason per example, via an OpenAI-compatible chat endpoint.

Off by default (params ``evaluate.judge.enabled``). Any server that speaks
``POST {base_url}/chat/completions`` works (OpenAI, vLLM, llama.cpp, Ollama ...).
The API key is read from the environment variable named by
``evaluate.judge.api_key_env`` and only ever put in the Authorization header:
never in params, logs, errors or outputs.

Transport failures (connection refused, timeout, HTTP 429/5xx) are retried with
back-off and then stop the stage with one clear line; a reply the judge model
garbles (no parseable verdict) is retried too and then recorded as
``correct: None`` with the reason, so one bad reply does not cost the run.
"""

from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from .chat_api import ChatEndpoint
from .errors import UserError

log = logging.getLogger("judge")

SYSTEM_PROMPT = (
    "당신은 한국어 질의응답 결과를 채점하는 엄격한 채점자입니다. "
    "모델 답변이 정답과 같은 사실을 말하는지만 판단하고, 문체·길이·인용 표시([c001] 등)는 무시하세요. "
    '반드시 JSON 한 줄로만 답하세요: {"correct": 0 또는 1, "reason": "한 문장 이유"}'
)
ANSWERABLE_RULE = (
    "정답의 핵심 사실(이름·주소·전화번호·요금·시간 등)을 빠짐없이 말하고, 정답과 모순되거나 "
    "문서에 없는 사실을 덧붙이지 않았으면 1, 아니면 0입니다. 답을 거부했다면 0입니다."
)
UNANSWERABLE_RULE = (
    "이 질문은 브로셔에 답이 없는 질문입니다. 모델이 정보가 없다고 답했으면(답변 거부) 1, "
    "어떤 답이든 지어냈다면 0입니다."
)

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_TRUE = {"1", "true", "yes", "correct", "예", "정답", "맞음", "o"}
_FALSE = {"0", "false", "no", "incorrect", "아니오", "오답", "틀림", "x"}


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key_env: str  # '' = the endpoint needs no key (a local server)
    timeout_s: float
    max_retries: int  # extra attempts after the first
    retry_backoff_s: float  # wait before retry n: backoff * 2**(n-1)
    max_tokens: int
    concurrency: int  # requests in flight

    @classmethod
    def from_params(cls, cfg: dict[str, Any]) -> JudgeConfig:
        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in cfg:
                raise UserError(f"params: missing evaluate.judge.{key}")
            if not isinstance(cfg[key], kind) or isinstance(cfg[key], bool):
                raise UserError(f"params: evaluate.judge.{key} has the wrong type ({cfg[key]!r})")
            return cfg[key]

        out = cls(
            base_url=need("base_url", str).rstrip("/"),
            model=need("model", str),
            api_key_env=need("api_key_env", str),
            timeout_s=float(need("timeout_s", (int, float))),
            max_retries=need("max_retries", int),
            retry_backoff_s=float(need("retry_backoff_s", (int, float))),
            max_tokens=need("max_tokens", int),
            concurrency=need("concurrency", int),
        )
        if not out.base_url.startswith(("http://", "https://")):
            raise UserError(
                f"params: evaluate.judge.base_url must start with http:// or https://, got {out.base_url!r}"
            )
        if not out.model:
            raise UserError("params: evaluate.judge.model is empty (the judge model name the endpoint serves)")
        if out.timeout_s <= 0 or out.max_retries < 0 or out.concurrency < 1 or out.max_tokens < 1:
            raise UserError(
                "params: evaluate.judge needs timeout_s > 0, max_retries >= 0, concurrency >= 1, max_tokens >= 1"
            )
        return out

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserError(
                f"LLM judge: environment variable {self.api_key_env} (params evaluate.judge.api_key_env) is not set; "
                "export it, or set api_key_env: '' for an endpoint without a key"
            )
        return key


def enabled(evaluate_cfg: dict[str, Any]) -> bool:
    judge = evaluate_cfg.get("judge")
    if judge is None:
        raise UserError("params: missing evaluate.judge (at least {enabled: false})")
    if not isinstance(judge, dict) or not isinstance(judge.get("enabled"), bool):
        raise UserError("params: evaluate.judge.enabled must be true or false")
    return judge["enabled"]


def build_messages(question: str, gold: str, answer: str, answerable: bool) -> list[dict[str, str]]:
    rule = ANSWERABLE_RULE if answerable else UNANSWERABLE_RULE
    user = (
        f"질문: {question}\n"
        f"정답: {gold}\n"
        f"모델 답변: {answer.strip() or '(빈 답변)'}\n\n"
        f"채점 기준: {rule}\n"
        'JSON으로만 답하세요: {"correct": 0 또는 1, "reason": "..."}'
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _as_verdict(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return 1
        if v in _FALSE:
            return 0
    return None


def parse_verdict(text: str) -> tuple[int, str] | None:
    """(0|1, reason) from a judge reply: bare JSON, JSON in a code fence or inside prose; None if unparseable."""
    text = (text or "").strip()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    # also every balanced {...} in the text, outermost first (models wrap JSON in prose)
    depth, start = 0, -1
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                candidates.append(text[start : i + 1])
    for cand in candidates:
        try:
            obj = json.loads(cand.strip())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            verdict = _as_verdict(obj.get("correct", obj.get("score")))
            if verdict is not None:
                return verdict, str(obj.get("reason", "")).strip()
    # last resort: "correct": 1 written as almost-JSON (single quotes, trailing commas ...)
    m = re.search(r"[\"']?correct[\"']?\s*[:=]\s*[\"']?([\w.]+)", text, re.I)
    if m and (verdict := _as_verdict(m.group(1))) is not None:
        reason = re.search(r"[\"']?reason[\"']?\s*[:=]\s*[\"'](.*?)[\"']\s*[,}]", text, re.S)
        return verdict, reason.group(1).strip() if reason else ""
    return None


class JudgeClient:
    """Verdicts through an OpenAI-compatible endpoint (stages.common.chat_api)."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.endpoint = ChatEndpoint(
            cfg.base_url,
            cfg.model,
            cfg.api_key(),
            cfg.timeout_s,
            max_retries=cfg.max_retries,
            retry_backoff_s=cfg.retry_backoff_s,
            what="LLM judge",
            hint="check evaluate.judge.base_url, or set evaluate.judge.enabled: false",
        )

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The reply text; transport errors retried, then a UserError naming the endpoint (never the key)."""
        return self.endpoint.complete(messages, temperature=0, max_tokens=self.cfg.max_tokens)

    def judge(self, question: str, gold: str, answer: str, answerable: bool) -> dict[str, Any]:
        """{'correct': 0|1|None, 'reason': str}; an unparseable reply is asked again, then recorded as None."""
        messages = build_messages(question, gold, answer, answerable)
        reply = ""
        for _ in range(self.cfg.max_retries + 1):
            reply = self.chat(messages)
            parsed = parse_verdict(reply)
            if parsed is not None:
                return {"correct": parsed[0], "reason": parsed[1]}
        return {"correct": None, "reason": f"unparseable judge reply: {reply[:200]!r}"}


def judge_predictions(preds: list[dict[str, Any]], cfg: JudgeConfig) -> list[dict[str, Any]]:
    """One verdict per prediction, in prediction order (requests run `concurrency` at a time)."""
    client = JudgeClient(cfg)

    def one(p: dict[str, Any]) -> dict[str, Any]:
        return client.judge(p["question"], p["gold_answer"], p["answer"], bool(p["answerable"]))

    with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
        verdicts = list(tqdm(pool.map(one, preds), total=len(preds), desc="judge", unit="q"))
    n_bad = sum(v["correct"] is None for v in verdicts)
    log.info("judge %s: %d verdicts, %d unparseable", cfg.model, len(verdicts) - n_bad, n_bad)
    return verdicts
