"""Gradio UI over app.rag: a chat, a model choice and a citation panel.

Two API endpoints (gradio_client): `/chat` (the UI event: question, history,
model -> chat, cleared box, citation HTML) and `/ask` (question, model -> a JSON
payload with the answer, abstention and shown chunks).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app.rag import (
    CHOICES,
    CSS,
    Answer,
    Engine,
    Pages,
    citation_cards,
    payload,
    render_answer_markdown,
    render_citations_html,
)
from stages.common.errors import UserError

TITLE = "brochure-rag: ask the brochure"
INTRO = (
    "Answers come from the indexed brochure with the evaluation's retrieval, prompt and greedy decoding. "
    "Each answer lists the chunks it cites with their section, page and the page region; "
    "when the model cites nothing, the retrieved context is shown instead."
)
EMPTY_PANEL = "<div class='rag-citations'><p>Citations appear here.</p></div>"


class DemoApp:
    """Glue between Gradio events and the engine: a UserError becomes a Gradio error message."""

    def __init__(self, engine: Engine, pages: Pages):
        self.engine = engine
        self.pages = pages

    def answer(self, question: str, choice: str) -> tuple[Answer, list[dict[str, Any]]]:
        answer = self.engine.ask(question, choice)
        cards = citation_cards(answer.shown_ids, self.engine.retriever.by_id, self.pages, self.engine.settings)
        return answer, cards

    def chat(self, question: str, history: list[dict[str, Any]] | None, choice: str):
        try:
            answer, cards = self.answer(question, choice)
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        by_id = self.engine.retriever.by_id
        history = [*(history or []), {"role": "user", "content": question.strip()}]
        history.append({"role": "assistant", "content": f"**{choice}** · {render_answer_markdown(answer, by_id)}"})
        return history, "", render_citations_html(answer, cards, self.engine.settings.abstain)

    def ask(self, question: str, model: str) -> dict[str, Any]:
        try:
            answer, cards = self.answer(question, model)
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        return payload(answer, cards)


def build_demo(app: DemoApp, prefill: str | None = None) -> gr.Blocks:
    """The Blocks app; with `prefill`, that question is answered now and every page opens showing the answer
    (a sample for screenshots and first-time visitors; a headless browser needs no interaction)."""
    engine = app.engine
    choices = engine.choices
    history, panel = [], EMPTY_PANEL
    if prefill:
        history, _, panel = app.chat(prefill, [], choices[-1])
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=5):
                model = gr.Radio([(CHOICES[c], c) for c in choices], value=choices[-1], label="Model")
                chatbot = gr.Chatbot(history, label="Chat", height=420)
                question = gr.Textbox(label="Question", placeholder="e.g. 박달재는 어디에 있나요?", submit_btn="Ask")
                if engine.settings.examples:
                    gr.Examples([[q] for q in engine.settings.examples], inputs=question, label="Examples")
            with gr.Column(scale=4):
                citations = gr.HTML(panel, label="Citations", elem_id="citations")

        def ask(question: str, model: str) -> dict:
            return app.ask(question, model)

        question.submit(app.chat, [question, chatbot, model], [chatbot, question, citations], api_name="chat")
        gr.api(ask, api_name="ask")
    return demo


def theme() -> gr.themes.Base:
    # System fonts only: the default theme fetches Google Fonts, which an offline machine cannot reach.
    fonts = ["NanumGothic", "Noto Sans CJK KR", "sans-serif"]
    return gr.themes.Default(font=fonts, font_mono=["monospace"])


def launch(demo: gr.Blocks, host: str, port: int, block: bool = True):
    """Serve the app; with block=False return at once (tests)."""
    return demo.launch(
        server_name=host,
        server_port=port or None,
        prevent_thread_lock=not block,
        quiet=not block,
        show_error=True,
        theme=theme(),
        css=CSS,
        footer_links=["api"],
    )
