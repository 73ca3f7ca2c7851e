"""Side by side: one question answered by the base model and by the persona at once, and the comparisons kept.

Both answers are asked for (in order, base model first) before either is read; then each is read in a thread of
its own, so the in-process scheduler decodes them as two rows of one batch, each row with its own adapter (a
server gets two requests at once). The threads draw nothing: they put pieces on a queue, and the page's own
thread draws both columns as the pieces arrive, at most ~20 times a second (`ui.chat.UI_UPDATE_S`).

A stop (or a new question) ends the page's run at its next draw; on the way out `cancel` is set and the threads
close their streams, so both rows leave the batch at the scheduler's next step. Each comparison stays in this
session's state, one list per persona (the last KEPT), and is drawn again on the next runs, newest last; an
answer that did not end on its own is marked cut.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import streamlit as st

from core.errors import StudioError
from llm.interface import ChatBackend
from llm.options import GenerationOptions
from llm.prompts import conversation
from personas.registry import BASE, Persona
from ui.chat import DEFAULT_SYSTEM_PROMPT, UI_UPDATE_S, render_footer
from ui.i18n import _, shown
from ui.personas import display_name
from ui.safe_text import plain, safe_markdown

log = logging.getLogger(__name__)

KEPT = 20  # comparisons kept per persona in a session: each is drawn again on every run of the view
_DONE = object()  # a reader thread's last message


def comparisons(persona: Persona) -> list[dict]:
    """This session's comparisons with `persona`, oldest first: {question, time, answers: [base, persona]}, each
    answer {name, model, content, stats, error, cut}."""
    return st.session_state.setdefault(_key(persona), [])


def _key(persona: Persona) -> str:
    return f"persona.{persona.name}.compare"


def kept_comparisons(persona: Persona) -> None:
    """The comparisons made so far, newest last, with a button that clears them."""
    earlier = comparisons(persona)
    if not earlier:
        return
    clear_button(persona)
    for record in earlier:
        question(record["question"])
        for column, answer in zip(st.columns(2), record["answers"]):
            with column:
                header(answer)
                if shown := _text(answer, done=True):
                    st.markdown(shown)
                footer(answer)


def clear_button(persona: Persona) -> None:
    st.button(_("Clear comparisons"), key="persona.compare_clear", on_click=_clear, args=(_key(persona),))


def _clear(key: str) -> None:
    st.session_state[key] = []


def question(text: str) -> None:
    st.markdown(_("**You:** {question}").format(question=plain(text)))


def header(answer: dict) -> None:
    st.markdown(f"**{plain(answer['name'])}**")  # names come from persona files: anyone's


def footer(answer: dict) -> None:
    """Under a column: its error, whether it was cut, and its figures (time to first token, speed, tokens,
    how many other answers were decoded with it)."""
    if answer["error"]:
        st.error(safe_markdown(answer["error"]))  # a server's error text may quote what it was sent
    render_footer(answer)


def _text(answer: dict, done: bool) -> str:
    shown = safe_markdown(answer["content"], keep_lines=True)
    return shown or (_("*(empty answer)*") if done and not answer["error"] else "")


def side_by_side(backend: ChatBackend, persona: Persona, text: str, options: GenerationOptions) -> None:
    """Answer `text` with the base model and with `persona` at once, streaming both columns; the comparison is
    kept (`comparisons`) as it streams, so a stop keeps what came."""
    whos = (BASE, persona)
    record = {"question": text, "time": time.time(), "answers": [_answer(who) for who in whos]}
    earlier = comparisons(persona)
    if not earlier:  # the first: `kept_comparisons` drew no button, so it is drawn here, where it will stay
        clear_button(persona)
    earlier.append(record)
    del earlier[:-KEPT]
    question(text)
    slots = []
    for column, answer in zip(st.columns(2), record["answers"]):
        with column:
            header(answer)
            slots.append((st.empty(), st.empty()))  # the text, then the footer

    def draw(index: int, done: bool = False) -> None:
        answer, (body, under) = record["answers"][index], slots[index]
        if shown := _text(answer, done):
            body.markdown(shown)
        if done:
            with under.container():
                footer(answer)

    _stream(backend, whos, text, options, record["answers"], draw)


def _answer(who: Persona) -> dict:
    name = f"{who.card.avatar} {display_name(who)}"
    # Cut until it ends on its own: a run stopped before then leaves it so.
    return {"name": name, "model": who.model, "content": "", "stats": {}, "error": None, "cut": True}


def _messages(who: Persona, text: str) -> list:
    system = who.card.system_prompt if who.kind != "base" else _(DEFAULT_SYSTEM_PROMPT)
    return conversation(system, [{"role": "user", "content": text}])


def _stream(backend: ChatBackend, whos, text: str, options: GenerationOptions, answers: list[dict], draw) -> None:
    """Both answers at once, each read in its own thread; `draw(index, done)` (this thread only) as they come."""
    cancel = threading.Event()
    out: queue.SimpleQueue = queue.SimpleQueue()
    threads: list[threading.Thread] = []
    unread = []  # streams asked for whose thread has not started (closed if this run ends first)
    try:
        for index, who in enumerate(whos):
            try:  # asked for here, in order; queued in the batch at the first read (in its thread)
                unread.append(backend.stream(_messages(who, text), options, model=who.model, cancel=cancel))
            except StudioError as exc:  # e.g. the prompt does not fit, the adapter went away: this column only
                answers[index].update(error=shown(exc), cut=False)
                draw(index, done=True)
                continue
            threads.append(threading.Thread(target=_read, args=(unread[-1], index, cancel, out), daemon=True))
        for thread, stream in zip(threads, list(unread)):  # one thread per stream asked for
            thread.start()
            unread.remove(stream)
        _show(out, answers, len(threads), draw)
    finally:
        cancel.set()  # a stop, a new question or a closed tab: both rows leave the batch at the next step
        for stream in unread:
            stream.close()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=30)
        while not out.empty():  # what came before they stopped, and their figures
            late = out.get()
            _apply(answers[late[0]], late, reraise=False)


def _show(out: queue.SimpleQueue, answers: list[dict], running: int, draw) -> None:
    """Apply the reader threads' messages as they come, drawing each column at most every UI_UPDATE_S (an
    answer that ends is drawn at once, with its figures), until `running` answers have ended."""
    changed, drawn = set(), time.perf_counter()
    while running:
        try:
            message = out.get(timeout=UI_UPDATE_S)
        except queue.Empty:
            message = None
        if message is not None:
            index = message[0]
            if _apply(answers[index], message):
                running -= 1
                draw(index, done=True)  # the other column goes on
                changed.discard(index)
            else:
                changed.add(index)
        if changed and time.perf_counter() - drawn >= UI_UPDATE_S:
            for index in sorted(changed):
                draw(index)
            changed, drawn = set(), time.perf_counter()
    for index in sorted(changed):
        draw(index)


def _read(stream, index: int, cancel: threading.Event, out: queue.SimpleQueue) -> None:
    """One answer, piece by piece into `out` with its figures so far (runs in its own thread; draws nothing)."""
    try:
        for piece in stream:
            out.put((index, piece, stream.stats.as_dict()))
            if cancel.is_set():
                break
    except Exception as exc:  # noqa: BLE001 - shown in its column by the page's thread; the other goes on
        if not isinstance(exc, StudioError):
            log.exception("a side-by-side answer failed")  # the page shows its kind only
        out.put((index, exc, stream.stats.as_dict()))
    except BaseException as exc:  # a stop raised where the pieces are made: the page's run's, raised there
        out.put((index, exc, stream.stats.as_dict()))
    finally:
        stream.close()  # leaves the batch at once
        out.put((index, _DONE, stream.stats.as_dict()))


def _apply(answer: dict, message: tuple, reraise: bool = True) -> bool:
    """One message from a reader thread, applied to its answer (only the page's thread writes the record).
    True when the answer ended."""
    _index, value, stats = message
    answer["stats"] = stats
    if value is _DONE:
        answer["cut"] = stats.get("finish_reason") not in ("stop", "length") and not (
            answer["error"] and not answer["content"]  # failed before any text: nothing was cut
        )
        return True
    if isinstance(value, StudioError):
        answer["error"] = shown(value)
    elif isinstance(value, Exception):
        answer["error"] = _("This answer failed ({kind}); the other one goes on. Try again.").format(
            kind=type(value).__name__
        )
    elif isinstance(value, BaseException):
        if reraise:
            raise value
    else:
        answer["content"] += value
    return False
