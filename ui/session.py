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
kept.

Versions (core/versions.py): the history is the conversation's branch, and `others` keeps every version
beside it. The gestures under a message (ui/gestures.py) ask for an edit, a regenerate or a continue
(`ask`, answered in the run the click starts) or switch versions at once (`switch`). An edit and a
regenerate cut the branch at the message they redo (what followed stays beside it) and answer from
there; a regenerated answer stays on screen until its replacement has text, and one that fails before
any text leaves the old answer in place (`_follow`). A continue feeds the cut answer back as the start
of the model's turn and grows the same message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from core import versions
from llm.interface import ChatBackend
from ui import conversation_list, conversations, gestures
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

    @property
    def others(self) -> str:  # the versions beside the history (core/versions.py)
        return f"{self.messages}.others"

    @property
    def request(self) -> str:  # a gesture's request, answered in the run its click starts
        return f"{self.messages}.request"


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


def open_conversations() -> set[str]:
    """The stored conversations this browser session has open, on any page."""
    return {cid for key in st.session_state.get(BOUND, []) if (cid := st.session_state.get(Keys(key).cid))}


class ChatSession:
    """One conversation on one page in this browser session."""

    def __init__(self, page: str, prefix: str | None = None, history: str | None = None):
        self.page = page  # the store's name for the page: "chat", "search", "team", "persona:<name>"
        self.prefix = prefix or page  # widget keys: "<prefix>.input", "<prefix>.new", …
        self.keys = Keys(history or f"{self.prefix}.messages")
        self.resuming: dict | None = None  # during a continue: the answer growing (read by ui.answer)
        self.replacing: dict | None = None  # during a regenerate: the answer beside the branch
        st.session_state.setdefault(self.keys.messages, [])
        st.session_state.setdefault(self.keys.others, [])
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
    def others(self) -> list[dict]:
        """Every version beside the history (edited questions' old text, regenerated answers, what followed)."""
        return st.session_state.setdefault(self.keys.others, [])

    @property
    def cid(self) -> str | None:
        return st.session_state.get(self.keys.cid)

    def follows(self) -> str | None:
        """The id a message added now follows."""
        return self.history[-1].get("id") if self.history else None

    def set_branch(self, branch: list[dict], others: list[dict]) -> None:
        st.session_state[self.keys.messages] = branch
        st.session_state[self.keys.others] = others

    # --- gestures (ui/gestures.py draws them; a click calls these) -------------------------------------

    def ask(self, kind: str, message_id: str | None, text_key: str | None = None) -> None:
        """A click's callback: redo `message_id` (None: the last message) in this run ("edit" with the text
        under `text_key`, "regenerate", "continue")."""
        text = st.session_state.get(text_key) if text_key else None
        st.session_state[self.keys.request] = {"kind": kind, "id": message_id, "text": text}

    def switch(self, message_id: str, chosen_id: str) -> None:
        """A click's callback: show version `chosen_id` in the place of `message_id` (and what follows it)."""
        history, others = self.history, self.others
        at = next((n for n, m in enumerate(history) if m.get("id") == message_id), None)
        chosen = next((m for m in others if m.get("id") == chosen_id), None)
        if at is not None and chosen is not None:
            self.set_branch(*versions.switch(history, others, at, chosen))

    def rate(self, message_id: str, key: str) -> None:
        """A click's callback: 👍/👎 on an answer (st.feedback: 1 up, 0 down, None cleared), saved with it."""
        value = st.session_state.get(key)
        for m in self.history:
            if m.get("id") == message_id:
                if value is None:
                    m.pop("feedback", None)
                else:
                    m["feedback"] = "up" if value == 1 else "down"

    def _take_request(self) -> tuple[str, int, dict] | None:
        """(kind, position, request) of the gesture clicked, if its message is still in the history."""
        request = st.session_state.pop(self.keys.request, None)
        if not request:
            return None
        wanted = request["id"] or (self.history[-1].get("id") if self.history else None)
        at = next((n for n, m in enumerate(self.history) if m.get("id") == wanted), None)
        if at is None:
            if request.get("text"):  # the message went (another tab's change): the typed text is not lost
                st.warning(_("That message is no longer in this conversation, so the edit was not sent."))
                with st.expander(_("Your unsent message (copy it from here)")):
                    st.code(request["text"], language=None)
            return None
        return request["kind"], at, request

    def _follow(self) -> None:
        """A history that ends in a question whose answer sits beside it goes on through that answer."""
        if (followed := versions.resume(self.history, self.others)) is not None:
            self.set_branch(*followed)

    @property
    def backend_session(self) -> str:
        """Names this browser session's conversation, so the backend can keep its cache between turns."""
        sid = st.session_state.setdefault(SESSION_ID, uuid.uuid4().hex)
        return f"{sid}:{self.keys.messages}:{self.cid or ''}"

    # --- pending and cut (the rules are in the module docstring) ------------------------------------

    def hold(self, message: dict) -> dict:
        """`message` is streaming: kept (as cut) if this run ends before it lands."""
        message.setdefault("parent", self.follows())
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
        message.setdefault("parent", self.follows())
        history = self.history
        if history and message.get("id") and history[-1].get("id") == message["id"]:  # a continue: grown
            history[-1] = message
            return message
        if message.get("replaces") and not message["content"]:
            return None
        if message["parent"] != self.follows():  # its branch is no longer shown (a switch while it streamed)
            self.others.append(message)
            return message
        if message.get("replaces") and history and history[-1].get("id") == message["replaces"]:
            self.set_branch(*versions.regroup(history, self.others, history[:-1]))  # kept as a version
            history = self.history
        history.append(message)
        return message

    def commit_pending(self) -> None:
        """An answer interrupted by a stop (or a new message) is kept, marked as cut."""
        if (pending := self.pending()) is not None:
            self.land(pending, cut=True)

    def to_save(self, streaming: dict | None = None) -> list[dict]:
        """The messages a save writes: the history, and an answer still streaming marked as cut (a continued
        one in its own place)."""
        history = self.history
        if streaming and history and streaming.get("id") and history[-1].get("id") == streaming["id"]:
            history = history[:-1]
        return history + ([{**streaming, "cut": True}] if streaming else [])

    def take_back(self) -> dict | None:
        """The last user message, out of the history (and the store, at the next save): it cannot be answered
        as it stands. The caller hands its text back so nothing typed is lost."""
        if not self.history or self.history[-1]["role"] != "user" or self.replacing is not None:
            return None  # a regenerated question stays: its old answer is beside it
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
        allowed: frozenset[str] = gestures.ALL,
    ) -> None:
        """Everything after the page's own widgets: bind, sidebar slot, commit pending, title, history (with the
        `allowed` gestures under each message), input, save, the answer (`reply`), finish. `body`, when given,
        takes the place of history, input and answer (a view with its own input, e.g. the persona page's side
        by side)."""
        conversations.bind(self)
        slot = conversation_list.sidebar_slot()
        self.commit_pending()
        self._follow()
        if regenerate:
            self._regenerate_button()
        request = self._take_request()
        st.title(title)
        if header:
            header()
        if body is not None:
            body()
        else:
            self._converse(reply, input_label, render, request, disabled, allowed)
        conversations.finish(self)
        conversation_list.draw(self, slot)

    def _regenerate_button(self) -> None:
        """The sidebar's regenerate: the same as the gesture under the last answer."""
        history = self.history
        can = bool(history) and history[-1]["role"] == "assistant"
        st.sidebar.button(
            _("Regenerate last answer"),
            key=self.key("regen"),
            disabled=not can,
            use_container_width=True,
            on_click=self.ask,
            args=("regenerate", None),  # the last answer when clicked (drawn before this run's new turn)
        )

    def _redo(self, kind: str, at: int, request: dict) -> Turn | None:
        """A gesture's turn, the branch cut where it redoes (what followed stays beside it); None if it cannot."""
        history, others = self.history, self.others
        message = history[at]
        if kind == "edit" and message["role"] == "user" and (text := check_prompt(request.get("text"))):
            edited = {**user_message(text), "parent": versions.parent_of(history, at)}
            branch, others = versions.cut_at(history, others, at)
            self.set_branch([*branch, edited], others)
            return Turn(text)
        if kind == "regenerate" and message["role"] == "assistant" and at and history[at - 1]["role"] == "user":
            self.set_branch(*versions.cut_at(history, others, at))
            return Turn(history[at - 1]["content"], replaces=message)
        if kind == "continue" and message["role"] == "assistant" and at == len(history) - 1:
            return Turn(None, resumes=message)
        return None

    def _shown(self, messages: list[dict]) -> int:
        """Where the messages drawn start: the latest ones, at most RENDER_AT_ONCE more per click of "Show
        earlier messages" (a long, imported conversation must not hold up every run of the page). All of it
        stays in the history."""
        limit = st.session_state.get(self.key("shown"), RENDER_AT_ONCE)
        if len(messages) <= limit:
            return 0
        st.caption(
            _("{count} earlier messages are not shown, to keep the page quick; they are kept.").format(
                count=len(messages) - limit
            )
        )
        st.button(
            _("Show earlier messages"), key=self.key("more"), on_click=_show_more, args=(self.key("shown"), limit)
        )
        return len(messages) - limit

    def _converse(self, reply, input_label: str, render, request, disabled: bool, allowed) -> None:
        # A regenerated answer is drawn apart, below, and stays (on screen; beside the branch in the history)
        # until its replacement has text. A click and a chat message never arrive in the same run.
        turn = self._redo(*request) if request else None
        history = self.history
        kids = versions.children(history, self.others)
        growing = turn.resumes if turn else None  # a continued answer is drawn as it grows, below
        for at in range(self._shown(history), len(history)):
            if history[at] is not growing:
                render(history[at])
                gestures.bar(self, history, at, kids, allowed)
        if turn and turn.replaces:
            with (old_slot := st.empty()).container():
                render(turn.replaces)
        prompt = check_prompt(st.chat_input(input_label, key=self.key("input"), submit_mode="stop", disabled=disabled))
        if turn is None:
            if prompt is None:
                return
            history.append({**user_message(prompt), "parent": self.follows()})
            render(history[-1])
            gestures.bar(self, history, len(history) - 1, kids, allowed)
            turn = Turn(prompt)
        conversations.save(self)
        self.resuming, self.replacing = turn.resumes, turn.replaces
        try:
            reply(turn)
        finally:
            self.resuming = self.replacing = None
        if turn.replaces:
            if self.history and self.history[-1]["role"] == "assistant":
                old_slot.empty()  # the new answer took its place
            else:
                self._follow()  # it failed before any text: the old answer is the branch's again
        history = self.history
        if history and history[-1]["role"] == "assistant" and (turn.resumes or history[-1] is not turn.replaces):
            gestures.bar(self, history, len(history) - 1, versions.children(history, self.others), allowed)


def _show_more(key: str, limit: int) -> None:
    st.session_state[key] = limit + RENDER_AT_ONCE
