"""The page sequence: every chat page runs the same steps in the same order.

`start` and `run` are that order, so a page file is its title, its own widgets and one call:

    password → backend (`start`) → the page's own widgets (options, model, persona, …)
    → bind the URL's conversation → sidebar slot → commit pending → title → history → input
    → save → answer (the page's `reply`) → finish (save again, then draw the conversation list into the slot)

The top of the ui modules a conversation goes through; each of them imports and calls only those below it, never
back up (tests/test_ui_layout.py holds the order):

    ui/session.py (the state: the only writer of its keys)
      ←  ui/conversations.py (that state synced with the store)
      ←  ui/answer.py (an answer streamed and landed), ui/conversation_list.py (the sidebar's list),
         ui/gestures.py (the buttons under a message; it needs ui/session.py only)
      ←  ui/page.py (this sequence)  ←  pages/

ui/chat.py's drawing helpers (the backend, the options, a message) sit below all of them.

A gesture under a message (ui/gestures.py) asks for an edit, a regenerate or a continue, answered here in the
run its click starts (`_redo`): an edit and a regenerate cut the branch at the message they redo and answer
from there; a regenerated answer stays on screen until its replacement has text. The rules for pending, cut
and versions are ui/session.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from core import versions
from llm.interface import ChatBackend
from ui import conversation_list, conversations, gestures
from ui.auth import require_password
from ui.chat import backend_or_stop, check_prompt, render_message, user_message
from ui.i18n import _
from ui.session import ChatSession

RENDER_AT_ONCE = 200  # messages drawn per run; earlier ones behind "Show earlier messages"


@dataclass(frozen=True)
class Turn:
    """What this run asks of the page: an answer to the history's last message (`prompt`, its text), in place of
    `replaces` when regenerating; or more of the answer `resumes` (a continue)."""

    prompt: str | None
    replaces: dict | None = None
    resumes: dict | None = None


def start() -> ChatBackend:
    """The first steps of every page: the password (app.py asks it before the navigation too; asking again
    keeps a page that runs on its own just as shut), then the shared backend, or why it is not there."""
    require_password()
    return backend_or_stop()


def run(
    session: ChatSession,
    title: str,
    reply: Callable[[Turn], None],
    input_label: str,
    *,
    header: Callable[[], None] | None = None,
    render: Callable[[dict], None] = render_message,
    regenerate: bool = False,
    disabled: bool = False,
    body: Callable[[], None] | None = None,
    allowed: frozenset[str] = gestures.ALL,
) -> None:
    """Everything after the page's own widgets: bind, sidebar slot, commit pending, title, history (with the
    `allowed` gestures under each message), input, save, the answer (`reply`), finish. `body`, when given,
    takes the place of history, input and answer (a view with its own input, e.g. the persona page's side
    by side)."""
    conversations.bind(session)
    slot = conversation_list.sidebar_slot()
    session.commit_pending()
    session.follow()
    if regenerate:
        _regenerate_button(session)
    request = _take_request(session)
    st.title(title)
    if header:
        header()
    if body is not None:
        body()
    else:
        _converse(session, reply, input_label, render, request, disabled, allowed)
    conversations.finish(session)
    conversation_list.draw(session, slot)


def _regenerate_button(session: ChatSession) -> None:
    """The sidebar's regenerate: the same as the gesture under the last answer."""
    history = session.history
    can = bool(history) and history[-1]["role"] == "assistant"
    st.sidebar.button(
        _("Regenerate last answer"),
        key=session.key("regen"),
        disabled=not can,
        use_container_width=True,
        on_click=session.ask,
        args=("regenerate", None),  # the last answer when clicked (drawn before this run's new turn)
    )


def _take_request(session: ChatSession) -> tuple[str, int, dict] | None:
    """(kind, position, request) of the gesture clicked, if its message is still in the history."""
    if (taken := session.take_request()) is None:
        return None
    request, at = taken
    if at is None:
        if request.get("text"):  # the message went (another tab's change): the typed text is not lost
            st.warning(_("That message is no longer in this conversation, so the edit was not sent."))
            with st.expander(_("Your unsent message (copy it from here)")):
                st.code(request["text"], language=None)
        return None
    return request["kind"], at, request


def _redo(session: ChatSession, kind: str, at: int, request: dict) -> Turn | None:
    """A gesture's turn, the branch cut where it redoes (what followed stays beside it); None if it cannot."""
    history = session.history
    message = history[at]
    if kind == "edit" and message["role"] == "user" and (text := check_prompt(request.get("text"))):
        session.edit(at, user_message(text))
        return Turn(text)
    if kind == "regenerate" and message["role"] == "assistant" and at and history[at - 1]["role"] == "user":
        session.cut_at(at)
        return Turn(history[at - 1]["content"], replaces=message)
    if kind == "continue" and message["role"] == "assistant" and at == len(history) - 1:
        return Turn(None, resumes=message)
    return None


def _shown(session: ChatSession, messages: list[dict]) -> int:
    """Where the messages drawn start: the latest ones, at most RENDER_AT_ONCE more per click of "Show
    earlier messages" (a long, imported conversation must not hold up every run of the page). All of it
    stays in the history."""
    limit = st.session_state.get(session.key("shown"), RENDER_AT_ONCE)
    if len(messages) <= limit:
        return 0
    st.caption(
        _("{count} earlier messages are not shown, to keep the page quick; they are kept.").format(
            count=len(messages) - limit
        )
    )
    st.button(
        _("Show earlier messages"), key=session.key("more"), on_click=_show_more, args=(session.key("shown"), limit)
    )
    return len(messages) - limit


def _converse(session: ChatSession, reply, input_label: str, render, request, disabled: bool, allowed) -> None:
    # A regenerated answer is drawn apart, below, and stays (on screen; beside the branch in the history)
    # until its replacement has text. A click and a chat message never arrive in the same run.
    turn = _redo(session, *request) if request else None
    history = session.history
    kids = versions.children(history, session.others)
    growing = turn.resumes if turn else None  # a continued answer is drawn as it grows, below
    for at in range(_shown(session, history), len(history)):
        if history[at] is not growing:
            render(history[at])
            gestures.bar(session, history, at, kids, allowed)
    if turn and turn.replaces:
        with (old_slot := st.empty()).container():
            render(turn.replaces)
    prompt = check_prompt(st.chat_input(input_label, key=session.key("input"), submit_mode="stop", disabled=disabled))
    if turn is None:
        if prompt is None:
            return
        render(session.add(user_message(prompt)))
        gestures.bar(session, history, len(history) - 1, kids, allowed)
        turn = Turn(prompt)
    conversations.save(session)
    with session.answering(turn.resumes, turn.replaces):
        reply(turn)
    if turn.replaces:
        if session.history and session.history[-1]["role"] == "assistant":
            old_slot.empty()  # the new answer took its place
        else:
            session.follow()  # it failed before any text: the old answer is the branch's again
    history = session.history
    if history and history[-1]["role"] == "assistant" and (turn.resumes or history[-1] is not turn.replaces):
        gestures.bar(session, history, len(history) - 1, versions.children(history, session.others), allowed)


def _show_more(key: str, limit: int) -> None:
    st.session_state[key] = limit + RENDER_AT_ONCE
