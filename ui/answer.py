"""An answer, from the page to the model and back: the prompt from the history, the stream drawn as it comes,
the partial answer held (and saved about once a second) while it streams, the finished one landed in the
history.

Below the page sequence (ui/page.py): it uses the session's state (ui/session.py), saves through
ui/conversations.py and draws with ui/chat.py's helpers; nothing here calls back up.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import streamlit as st

from core.errors import StudioError
from core.message import Message as ConversationMessage
from core.stats import continued
from llm.interface import ChatBackend, GenerationStats, PromptTooLongError
from llm.options import GenerationOptions
from llm.prompts import Message, conversation
from ui import conversations
from ui.chat import UI_UPDATE_S, render_footer
from ui.i18n import _, shown
from ui.safe_text import safe_markdown, write_stream

if TYPE_CHECKING:
    from ui.session import ChatSession


def answer(
    session: ChatSession,
    backend: ChatBackend,
    system_prompt: str,
    options: GenerationOptions,
    model: str | None = None,
    extra: dict | None = None,
    avatar: str | None = None,
) -> None:
    """Stream the assistant's reply to the session's history and add it there when done."""
    history = session.history
    # A regenerate (extra "replaces": the last answer's id) answers the turns before that answer, which
    # stays in the history until the new one has text.
    replaces = (extra or {}).get("replaces")
    earlier = history[:-1] if replaces and history and history[-1].get("id") == replaces else history
    messages: list[Message] = conversation(system_prompt, earlier)
    extra = {"system_prompt": system_prompt, **(extra or {})}
    with st.chat_message("assistant", avatar=avatar):
        message = stream_to_history(session, backend, messages, options, model, extra)
        if message:
            render_footer(message)


def coalesce(pieces: Iterator[str], every_s: float = UI_UPDATE_S) -> Iterator[str]:
    """Join pieces that arrive within `every_s`: each yield re-renders the answer's markdown in the
    browser, and per-token updates cost more CPU than the tokens themselves on a small machine."""
    buffer, last = "", time.perf_counter()
    for piece in pieces:
        buffer += piece
        if time.perf_counter() - last >= every_s:
            yield buffer
            buffer, last = "", time.perf_counter()
    if buffer:
        yield buffer


def stream_to_history(
    session: ChatSession,
    backend: ChatBackend,
    messages: list[Message],
    options: GenerationOptions,
    model: str | None = None,
    extra: dict | None = None,
    finish: Callable[[str], dict] | None = None,
) -> dict | None:
    """Stream `messages`' answer into the current container; add it (with `extra`, and what `finish` makes of
    its text: a search answer's citations) to the session's history.

    While streaming, the partial answer is the session's pending one and is saved about once a second, so a
    stop, a new message or a crash keeps it. Returns the stored message, or None when nothing came. During a
    continue (`session.resuming`, the last of `messages`) the same answer grows: it is shown from its start.
    """
    stats = GenerationStats()
    resume = session.resuming
    if resume is not None:
        options = options.model_copy(update={"continue_final_message": True})
        pending = session.hold({k: v for k, v in resume.items() if k != "cut"})
    else:
        settings = options.model_dump(exclude={"logit_bias", "continue_final_message"})  # figures only
        pending = session.hold(
            ConversationMessage.answer(model=model or backend.name, settings=settings, **(extra or {})).as_state()
        )
    before = pending["content"]
    on_progress = conversations.saver(session)

    def recorded() -> Iterator[str]:
        # Every piece is kept as it arrives; only the screen updates are coalesced below, so an
        # error or a stop never loses text that already came.
        nonlocal stats
        stream = backend.stream(messages, options, model=model, session=session.backend_session)
        stats = stream.stats
        for piece in stream:
            pending["content"] += piece
            pending["stats"] = continued(stats.as_dict(), resume)
            on_progress(pending)
            yield piece

    try:
        write_stream(coalesce(itertools.chain([before] if before else [], recorded())))  # as render_message draws
    except StudioError as exc:
        session.drop_pending()
        st.error(safe_markdown(shown(exc)))  # a server's error text may quote what it was sent
        if pending["content"] != before:
            return session.land(finished(pending, stats, resume, finish), cut=True)
        if isinstance(exc, PromptTooLongError) and (unsent := session.take_back()):
            # Not answerable as it stands: out of the history (and the store) so later turns still work,
            # and its text handed back so nothing the user typed is lost.
            with st.expander(_("Your unsent message (copy it from here)")):
                st.code(unsent["content"], language=None)
        return None
    return session.land({**finished(pending, stats, resume, finish), "dropped": stats.dropped_messages})


def finished(pending: dict, stats: GenerationStats, resume: dict | None, finish) -> dict:
    """The answer as it lands: its figures (a continued one's count its earlier part too) and `finish`'s fields."""
    return {**pending, "stats": continued(stats.as_dict(), resume), **(finish(pending["content"]) if finish else {})}
