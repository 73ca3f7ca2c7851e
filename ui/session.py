"""One page's conversation in this browser session: its state, and the one place that writes it.

`ChatSession` names every session-state key of a conversation (`Keys`) and is their only writer: the page
sequence (ui/page.py), the sync with the store (ui/conversations.py), the answer flow (ui/answer.py) and the
gestures' clicks (ui/gestures.py) change a conversation only through its methods. It is the bottom of those
modules and imports none of them.

Pending and cut (`hold`, `land`, `commit_pending`, `to_save`): while an answer streams it sits in
`keys.pending`, so a run that ends early (the stop button, a new message, a closed tab) leaves it there and the
next run lands it in the history marked `cut`; a save while it streams writes it marked `cut` too. An answer
that fails after some text lands cut; one that fails before any text is not kept.

Versions (core/versions.py): the history is the conversation's branch, and `others` keeps every version
beside it. The gestures under a message ask for an edit, a regenerate or a continue (`ask`, answered in the
run the click starts) or switch versions at once (`switch`). An edit and a regenerate cut the branch at the
message they redo (`edit`, `cut_at`: what followed stays beside it); a regenerated answer stays on screen
until its replacement has text, and one that fails before any text leaves the old answer in place
(`follow`). A continue feeds the cut answer back as the start of the model's turn and grows the same message.

What the store holds (`Sync`): what this session last read or wrote, per message, so a save writes only what
is new or changed (ui/conversations.py does the saving; `adopt`, `started` and `wrote` record it here). A
message taken back off the page (`take_back`) is hidden in the store at the next save.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import streamlit as st

from core import versions
from core.store import fingerprint, new_message_id

SESSION_ID = "session.id"  # names this browser session to the backend (its per-conversation cache)
BOUND = "session.histories"  # the history keys this session has bound (see `open_conversations`)


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
    def sync(self) -> str:  # what this session knows the store holds (`Sync`)
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


@dataclass
class Sync:
    """What this session knows the store holds of its conversation."""

    version: int | None = None  # the conversation's version after this session's last read or write
    # message id -> (fingerprint, beside the branch) as this session last wrote or read it
    saved: dict[str, tuple[int, bool]] = field(default_factory=dict)
    hide: list[str] = field(default_factory=list)  # ids taken off the page, to hide in the store at the next save

    @classmethod
    def of(cls, version: int | None, messages: list[dict], others: list[dict]) -> Sync:
        """The store holds `messages` and `others` as they are now, at `version`."""
        return cls(version, _fingerprints(messages, others))

    def changes(self, messages: list[dict], others: list[dict]) -> tuple[list[tuple[int, dict]], list[str]]:
        """(position, message) pairs not yet written as they are now (the branch's messages, then the versions
        beside it), and ids to hide."""
        changed = []
        for off, group in ((False, messages), (True, others)):
            for seq, m in enumerate(group):
                m.setdefault("id", new_message_id())  # every message has one from birth; this covers any other source
                if self.saved.get(m["id"]) != (fingerprint(m), off):
                    changed.append((seq, m))
        return changed, self.hide


def _fingerprints(messages: list[dict], others: list[dict]) -> dict[str, tuple[int, bool]]:
    return {m["id"]: (fingerprint(m), off) for off, group in ((False, messages), (True, others)) for m in group}


def open_conversations() -> set[str]:
    """The stored conversations this browser session has open, on any page."""
    return {cid for key in st.session_state.get(BOUND, []) if (cid := st.session_state.get(Keys(key).cid))}


class ChatSession:
    """One conversation on one page in this browser session."""

    def __init__(self, page: str, prefix: str | None = None, history: str | None = None):
        self.page = page  # the store's name for the page: "chat", "search", "team", "persona:<name>"
        self.prefix = prefix or page  # widget keys: "<prefix>.input", "<prefix>.new", …
        self.keys = Keys(history or f"{self.prefix}.messages")
        self.resuming: dict | None = None  # during a continue: the answer growing (`answering`)
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

    @property
    def note(self) -> tuple[str, str] | None:
        """(cid, text): why this conversation goes on in a copy, if it does."""
        return st.session_state.get(self.keys.note)

    def follows(self) -> str | None:
        """The id a message added now follows."""
        return self.history[-1].get("id") if self.history else None

    def set_branch(self, branch: list[dict], others: list[dict]) -> None:
        st.session_state[self.keys.messages] = branch
        st.session_state[self.keys.others] = others

    def add(self, message: dict) -> dict:
        """A message the person sent, after the branch shown."""
        message.setdefault("parent", self.follows())
        self.history.append(message)
        return message

    @property
    def backend_session(self) -> str:
        """Names this browser session's conversation, so the backend can keep its cache between turns."""
        sid = st.session_state.setdefault(SESSION_ID, uuid.uuid4().hex)
        return f"{sid}:{self.keys.messages}:{self.cid or ''}"

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

    def take_request(self) -> tuple[dict, int | None] | None:
        """The gesture clicked (its request, taken) and its message's place in the history (None: it went)."""
        request = st.session_state.pop(self.keys.request, None)
        if not request:
            return None
        wanted = request["id"] or self.follows()
        return request, next((n for n, m in enumerate(self.history) if m.get("id") == wanted), None)

    def edit(self, at: int, edited: dict) -> None:
        """The question at `at` asked again as `edited`: the branch is cut there (what followed stays beside it)."""
        history, others = self.history, self.others
        edited = {**edited, "parent": versions.parent_of(history, at)}
        branch, others = versions.cut_at(history, others, at)
        self.set_branch([*branch, edited], others)

    def cut_at(self, at: int) -> None:
        """The branch ends before `at` (a regenerate); the message there and what followed stay beside it."""
        self.set_branch(*versions.cut_at(self.history, self.others, at))

    def follow(self) -> None:
        """A history that ends in a question whose answer sits beside it goes on through that answer."""
        if (followed := versions.resume(self.history, self.others)) is not None:
            self.set_branch(*followed)

    @contextmanager
    def answering(self, resumes: dict | None, replaces: dict | None) -> Iterator[None]:
        """While an answer is asked for: the answer a continue grows (`resumes`), the one a regenerate
        replaces (`replaces`)."""
        self.resuming, self.replacing = resumes, replaces
        try:
            yield
        finally:
            self.resuming = self.replacing = None

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
        """The last user message, out of the history (and hidden in the store at the next save): it cannot be
        answered as it stands. The caller hands its text back so nothing typed is lost."""
        if not self.history or self.history[-1]["role"] != "user" or self.replacing is not None:
            return None  # a regenerated question stays: its old answer is beside it
        message = self.history.pop()
        if message.get("id"):
            self.sync.hide.append(message["id"])
        return message

    # --- what the store holds (ui/conversations.py reads and writes the store; this records it) -----

    @property
    def sync(self) -> Sync:
        return st.session_state.setdefault(self.keys.sync, Sync())

    def adopt(
        self,
        cid: str | None,
        version: int | None = None,
        messages: list[dict] | None = None,
        others: list[dict] | None = None,
    ) -> None:
        """This session now shows `messages` of conversation `cid` (and keeps the `others` versions beside them),
        as stored at `version` (None: a new chat)."""
        messages, others = messages or [], others or []
        self.set_branch(messages, others)
        st.session_state[self.keys.sync] = Sync.of(version, messages, others)
        if cid:
            st.session_state[self.keys.cid] = cid
        else:
            st.session_state.pop(self.keys.cid, None)

    def started(self, cid: str, messages: list[dict]) -> None:
        """A new stored conversation `cid`, now this session's, holds `messages` (and the versions beside)."""
        st.session_state[self.keys.cid] = cid
        st.session_state[self.keys.sync] = Sync.of(0, messages, self.others)

    def wrote(self, version: int, changed: list[tuple[int, dict]], off: set[str]) -> None:
        """A save wrote `changed` (those in `off` beside the branch) and the hidden ids; the store is at `version`."""
        sync = self.sync
        sync.version = version
        sync.saved.update((m["id"], (fingerprint(m), m["id"] in off)) for _at, m in changed)
        sync.hide = []

    def goes_on_in(self, cid: str, note: str) -> None:
        """This conversation goes on in the copy `cid`; `note` says why."""
        st.session_state[self.keys.note] = (cid, note)
