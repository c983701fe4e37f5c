"""A minimal OpenAI-compatible chat client (urllib: no extra dependency), shared by the llm QA
generator (synthesize) and the optional LLM judge (evaluate).

Any server answering ``POST {base_url}/chat/completions`` works (OpenAI, vLLM, llama.cpp, Ollama ...).
The API key goes only into the Authorization header: never into logs or error messages.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from .errors import UserError

log = logging.getLogger("chat_api")

# Worth retrying: timeouts, conflicts, rate limits, server errors. 400/401/404 will not get better.
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ChatEndpoint:
    """``complete(messages)`` -> reply text; transport errors retried with exponential back-off, then one
    UserError naming the endpoint, the model, the attempts and the last failure (plus ``hint``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str,
        timeout_s: float,
        *,
        max_retries: int = 0,
        retry_backoff_s: float = 0.0,
        what: str = "LLM",
        hint: str = "",
    ):
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.model = model
        self._key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.what = what
        self.hint = hint

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode("utf-8"), headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (url from params)
            return json.loads(resp.read().decode("utf-8"))

    def complete(self, messages: list[dict[str, str]], **sampling: Any) -> str:
        payload = {"model": self.model, "messages": messages, **sampling}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            try:
                body = self._post(payload)
                return str(body["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code not in RETRY_STATUS:
                    break
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"timed out after {self.timeout_s:g} s" if "timed out" in str(reason) else str(reason)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                last = f"not an OpenAI chat completion response ({exc.__class__.__name__})"
            log.warning("%s request %d/%d failed: %s", self.what, attempt + 1, self.max_retries + 1, last)
        raise UserError(
            f"{self.what}: {self.url} (model {self.model!r}) failed after {attempt + 1} attempt(s): {last}"
            + (f" ({self.hint})" if self.hint else "")
        )
