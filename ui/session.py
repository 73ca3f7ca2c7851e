"""One page's conversation in this browser session: its session-state keys, its history, and the page sequence.

Every chat page runs the same steps in the same order. `start` and `ChatSession.run` are that order, so a
page file is its title, its own widgets and one call:

    password → backend (`start`) → the page's own widgets (options, model, persona, …)
    → bind the URL's conversation → sidebar slot → commit pending → title → history → input
    → save → answer → finish (save again, then draw the conversation list into the slot)

Pending and cut, on the page side, live here (`hold`, `land`, `commit_pending`, `to_save`): while an answer
streams it sits in `keys.pending`, so a run that ends early (the stop button, a new message, a closed tab)
leaves it there and the next run lands it in the history marked `cut`; a save while it streams writes it
marked `cut` too. An answer that fails after some text lands cut; one that fails before any text is not
kept. A regenerated answer (`replaces`) takes the old one's place only once it has text (the store hides the
old one by the same rule, core/store.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from llm.interface import ChatBackend
from ui import conversations
from ui.auth import require_password
from ui.chat import backend_or_stop, check_prompt, render_message, user_message
from ui.i18n import _

SESSION_ID = "session.id"  # names this browser session to the backend (its per-conversation cache)
BOUND = "session.histories"  # the history keys this session has bound (see `open_conversations`)
RENDER_AT_ONCE = 200  # messages drawn per run; earlier ones behind "Show earlier messages"


@dataclass(frozen=True)
class Keys:
    """The session-state keys of one conversation on a page; built here only."""

    messages: str  # the history: a list of message dicts

    @property
    def pending(self) -> str:  # the answer streaming now (see the module docstring)
        return f"{self.messages}.pending"

    @property
    def cid(self) -> str:  # the stored conversation's id, once saved
        return f"{self.messages}.cid"

    @property
    def sync(self) -> str:  # what this session knows the store holds (ui.conversations.Sync)
        return f"{self.messages}.sync"

    @property
    def note(self) -> str:  # (cid, text): why this conversation goes on in a copy
        return f"{self.messages}.note"


@dataclass(frozen=True)
class Turn:
    """What this run asks of the page: a new message (`prompt`), or a new answer in place of `replaces`."""

    prompt: str | None
    replaces: dict | None = None


def start() -> ChatBackend:
    """The first steps of every page: the password (app.py asks it before the navigation too; asking again
    keeps a page that runs on its own just as shut), then the shared backend, or why it is not there."""
    require_password()
    return backend_or_stop()


def open_conversations() -> set[str]:
    """The stored conversations this browser session has open, on any page."""
    return {cid for key in st.session_state.get(BOUND, []) if (cid := st.session_state.get(Keys(key).cid))}


class ChatSession:
    """One conversation on one page in this browser session."""

    def __init__(self, page: str, prefix: str | None = None, history: str | None = None):
        self.page = page  # the store's name for the page: "chat", "search", "team", "persona:<name>"
        self.prefix = prefix or page  # widget keys: "<prefix>.input", "<prefix>.new", …
        self.keys = Keys(history or f"{self.prefix}.messages")
        st.session_state.setdefault(self.keys.messages, [])
        bound = st.session_state.setdefault(BOUND, [])
        if self.keys.messages not in bound:
            bound.append(self.keys.messages)

    def key(self, name: str) -> str:
        """A widget's key on this page."""
        return f"{self.prefix}.{name}"

    @property
    def history(self) -> list[dict]:
        return st.session_state[self.keys.messages]

    @property
    def cid(self) -> str | None:
        return st.session_state.get(self.keys.cid)

    @property
    def backend_session(self) -> str:
        """Names this browser session's conversation, so the backend can keep its cache between turns."""
        sid = st.session_state.setdefault(SESSION_ID, uuid.uuid4().hex)
        return f"{sid}:{self.keys.messages}:{self.cid or ''}"

    # --- pending and cut (the rules are in the module docstring) ------------------------------------

    def hold(self, message: dict) -> dict:
        """`message` is streaming: kept (as cut) if this run ends before it lands."""
        st.session_state[self.keys.pending] = message
        return message

    def pending(self) -> dict | None:
        return st.session_state.get(self.keys.pending)

    def drop_pending(self) -> None:
        st.session_state.pop(self.keys.pending, None)

    def land(self, message: dict, cut: bool = False) -> dict | None:
        """Add an answer to the history (it is no longer pending). A regenerated one (`replaces`) takes the
        old one's place, and only once it has text: one that fails before any text keeps the old answer."""
        self.drop_pending()
        message = {**message, "cut": True} if cut else message
        history = self.history
        if not message.get("replaces"):
            history.append(message)
            return message
        if not message["content"]:
            return None
        if history and history[-1].get("id") == message["replaces"]:
            history[-1] = message
        else:
            history.append(message)
        return message

    def commit_pending(self) -> None:
        """An answer interrupted by a stop (or a new message) is kept, marked as cut."""
        if (pending := self.pending()) is not None:
            self.land(pending, cut=True)

    def to_save(self, streaming: dict | None = None) -> list[dict]:
        """The messages a save writes: the history, and an answer still streaming marked as cut."""
        return self.history + ([{**streaming, "cut": True}] if streaming else [])

    def take_back(self) -> dict | None:
        """The last user message, out of the history (and the store, at the next save): it cannot be answered
        as it stands. The caller hands its text back so nothing typed is lost."""
        if not self.history or self.history[-1]["role"] != "user":
            return None
        message = self.history.pop()
        conversations.retract(self, message)
        return message

    # --- the page sequence --------------------------------------------------------------------------

    def run(
        self,
        title: str,
        reply: Callable[[Turn], None],
        input_label: str,
        *,
        header: Callable[[], None] | None = None,
        render: Callable[[dict], None] = render_message,
        regenerate: bool = False,
        disabled: bool = False,
        body: Callable[[], None] | None = None,
    ) -> None:
        """Everything after the page's own widgets: bind, sidebar slot, commit pending, title, history, input,
        save, the answer (`reply`), finish. `body`, when given, takes the place of history, input and answer
        (a view with its own input, e.g. the persona page's side by side)."""
        conversations.bind(self)
        slot = conversations.sidebar_slot()
        self.commit_pending()
        old = self._regenerate_button() if regenerate else None
        st.title(title)
        if header:
            header()
        if body is not None:
            body()
        else:
            self._converse(reply, input_label, render, old, disabled)
        conversations.finish(self, slot)

    def _regenerate_button(self) -> dict | None:
        """The last answer, when the sidebar's regenerate button was clicked."""
        history = self.history
        can = bool(history) and history[-1]["role"] == "assistant"
        clicked = st.sidebar.button(
            _("Regenerate last answer"), key=self.key("regen"), disabled=not can, use_container_width=True
        )
        return history[-1] if clicked and can else None

    def _shown(self, messages: list[dict]) -> list[dict]:
        """The latest messages, at most RENDER_AT_ONCE more per click of "Show earlier messages": a long
        (imported) conversation must not hold up every run of the page. All of it stays in the history."""
        limit = st.session_state.get(self.key("shown"), RENDER_AT_ONCE)
        if len(messages) <= limit:
            return messages
        st.caption(
            _("{count} earlier messages are not shown, to keep the page quick; they are kept.").format(
                count=len(messages) - limit
            )
        )
        st.button(
            _("Show earlier messages"), key=self.key("more"), on_click=_show_more, args=(self.key("shown"), limit)
        )
        return messages[-limit:]

    def _converse(self, reply, input_label: str, render, old: dict | None, disabled: bool) -> None:
        # A regenerated answer is drawn apart, below, and stays (on screen and in the history) until its
        # replacement has text. A click and a chat message never arrive in the same run.
        history = self.history
        for message in self._shown(history[:-1] if old else history):
            render(message)
        if old:
            with (old_slot := st.empty()).container():
                render(old)
        prompt = check_prompt(st.chat_input(input_label, key=self.key("input"), submit_mode="stop", disabled=disabled))
        if prompt is not None and old is None:
            history.append(user_message(prompt))
            render(history[-1])
        elif old is None:
            return
        conversations.save(self)
        reply(Turn(prompt if old is None else None, old))
        if old and self.history[-1] is not old:
            old_slot.empty()  # the new answer took its place


def _show_more(key: str, limit: int) -> None:
    st.session_state[key] = limit + RENDER_AT_ONCE
