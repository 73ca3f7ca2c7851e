"""Drawing helpers shared by the pages: loading the backend, the sidebar's options, messages.

These only draw and keep per-session state; all model work goes through the backend (`llm.interface`), and an
answer's stream is ui/answer.py's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import streamlit as st
from pydantic import BaseModel, ValidationError

import runtime
from core.errors import StudioError, validation_message
from core.message import Message
from core.settings import get_settings
from core.stats import Stats
from llm.interface import ChatBackend
from llm.options import GenerationOptions
from ui import prefs
from ui.i18n import N_, _, shown
from ui.safe_text import safe_markdown

UI_UPDATE_S = 0.05  # at most ~20 screen updates a second while an answer streams (ui/answer.py, the team page)
DEFAULT_SYSTEM_PROMPT = N_("You are a helpful, honest assistant. Answer in the language of the question.")
# The sampling widgets: label, slider or number box, step, key suffix. Ranges and defaults come from
# GenerationOptions (`field_range`), so a widget offers exactly what the options accept.
SAMPLING = {
    "max_new_tokens": (N_("Max new tokens"), "number", 64, "max_new"),
    "temperature": (N_("Temperature (0 = greedy)"), "slider", 0.05, "temperature"),
    "top_p": (N_("Top-p"), "slider", 0.05, "top_p"),
    "top_k": (N_("Top-k (0 = off)"), "number", 1, "top_k"),
    "repetition_penalty": (N_("Repetition penalty"), "slider", 0.05, "rep"),
    "presence_penalty": (N_("Presence penalty (OpenAI's)"), "slider", 0.1, "presence"),
    "frequency_penalty": (N_("Frequency penalty (OpenAI's)"), "slider", 0.1, "frequency"),
    "seed": (N_("Seed (empty = random)"), "number", 1, "seed"),
}
# Each option's help, as GenerationOptions' descriptions say it (tests/test_i18n.py holds the two together).
HELP = {
    "max_new_tokens": N_("Longest answer, in tokens."),
    "temperature": N_("0 means greedy decoding (always the likeliest token)."),
    "top_p": N_("Sample from the smallest set of tokens whose probability adds up to this."),
    "top_k": N_("Sample from the k likeliest tokens; 0 turns it off."),
    "repetition_penalty": N_("Above 1 discourages repeating earlier tokens."),
    "presence_penalty": N_("Above 0 discourages any token already in the answer, once."),
    "frequency_penalty": N_("Above 0 discourages tokens by how often the answer has used them."),
    "seed": N_("Fixed seed for repeatable sampling; empty for random."),
}
# Starting points for the sliders; any of them can be moved after.
PRESETS = {
    N_("Precise"): {"temperature": 0.2, "top_p": 0.9, "repetition_penalty": 1.1},
    N_("Balanced"): {"temperature": 0.7, "top_p": 0.95, "repetition_penalty": 1.1},
    N_("Creative"): {"temperature": 1.1, "top_p": 1.0, "repetition_penalty": 1.05},
}


def backend_or_stop() -> ChatBackend:
    """The shared backend; on failure the page shows why and how to fix it, then stops this run."""
    box = st.empty()

    def progress(message: str, fraction: float | None) -> None:
        if fraction is None:
            box.info(message)
        else:
            box.progress(fraction, text=message)

    result: dict = {}

    def load() -> None:  # in a thread, so this run can show the progress of a load another caller started
        try:
            result["backend"] = runtime.get_backend()
        except Exception as exc:  # noqa: BLE001 - raised again below, in the page's own thread
            result["error"] = exc

    loader = threading.Thread(target=load, name="page-model-wait", daemon=True)
    loader.start()
    loader.join(0.05)
    while loader.is_alive():
        message, fraction = runtime.loading_status() or ("", None)
        progress(loading_words(message), fraction)
        loader.join(0.25)
    box.empty()
    if isinstance(result.get("error"), StudioError):
        st.error(_("The model is not available. {reason}").format(reason=shown(result["error"])))
        st.stop()
    if "error" in result:
        raise result["error"]
    return result["backend"]


def loading_words(message: str) -> str:
    """A stage of the model's load (a `Text` from llm/loading.py or runtime.py), as the page says it."""
    return shown(message) if message else _("Starting the model…")


def model_notes(backend: ChatBackend) -> list[str]:
    """What the page says about the loaded model, in plain words (the README names the settings)."""
    notes = [_(note) for note in backend.notes]
    if backend.name.endswith("(demo)"):
        why = _("No GPU was found, so this") if get_settings().llm_model == "auto" else _("This")
        notes.insert(
            0,
            _(
                "{why} is the small demo model that comes with the studio (SmolLM2-135M), running on the CPU: "
                "good for trying the studio, weak at answering. On a machine with a GPU the studio loads "
                "Llama-3.1-8B-Instruct; the README says how to choose another model."
            ).format(why=why),
        )
    return notes


def field_range(model: type[BaseModel], name: str, step: float = 1) -> tuple:
    """(min, max, default) of a pydantic field, read from its ge/gt/le (a `gt` bound starts one step above)."""
    info = model.model_fields[name]
    low = high = None
    for rule in info.metadata:
        if getattr(rule, "ge", None) is not None:
            low = rule.ge
        elif getattr(rule, "gt", None) is not None:
            low = rule.gt + step
        if getattr(rule, "le", None) is not None:
            high = rule.le
    return low, high, info.default


def sampling_widgets(prefix: str, names=tuple(SAMPLING)) -> dict:
    """The sampling widgets `names`, with GenerationOptions' ranges and defaults; their values are kept in this
    browser (`ui.prefs`, the part `prefix`), so a reload brings them back."""
    keys = {name: f"{prefix}.{SAMPLING[name][3]}" for name in names}
    ranges = {name: field_range(GenerationOptions, name, SAMPLING[name][2]) for name in names}
    prefs.seed(keys, prefs.options(prefs.kept(prefix), ranges))  # only where this session has no value yet
    values = {}
    for name in names:
        label, kind, step, _suffix = SAMPLING[name]
        low, high, default = ranges[name]
        widget = st.slider if kind == "slider" else st.number_input
        values[name] = widget(_(label), low, high, default, step, key=keys[name], help=_(HELP[name]))
    prefs.keep(prefix, {name: value for name, value in values.items() if value != ranges[name][2]})
    return values


def presets(prefix: str) -> None:
    """Buttons that set the sampling sliders to a starting point (before the sliders are drawn)."""
    columns = st.columns(len(PRESETS))
    for column, (name, values) in zip(columns, PRESETS.items()):
        column.button(_(name), key=f"{prefix}.preset.{name}", on_click=_apply_preset, args=(prefix, values))


def _apply_preset(prefix: str, values: dict) -> None:
    for name, value in values.items():
        st.session_state[f"{prefix}.{SAMPLING[name][3]}"] = value


def sidebar_options(prefix: str, system_prompt: str | None = None) -> tuple[str, GenerationOptions]:
    """System prompt and sampling options, one set per page, kept in this browser (`ui.prefs`) across reloads.

    A fixed `system_prompt` (a persona's) is shown read-only instead of the editable one."""
    with st.sidebar:
        if system_prompt is None:
            part, default = f"{prefix}_system", _(DEFAULT_SYSTEM_PROMPT)
            prefs.seed({"system": f"{prefix}.system"}, prefs.text_value(prefs.kept(part), "system"))
            system_prompt = st.text_area(_("System prompt"), default, key=f"{prefix}.system", height=100)
            if not prefs.keep(part, {"system": system_prompt} if system_prompt != default else {}):
                st.caption(_("This system prompt is too long to be kept after a reload."))
        else:
            st.caption(_("System prompt (fixed for this page)"))
            st.text(system_prompt or _("(none)"))
        with st.expander(_("Sampling"), expanded=False):
            presets(prefix)
            values = sampling_widgets(prefix)
    try:
        return system_prompt, GenerationOptions(**values)
    except ValidationError as exc:
        reason = shown(validation_message(exc))
        st.sidebar.error(_("Invalid option: {reason}. Using the defaults.").format(reason=reason))
        return system_prompt, GenerationOptions()


@st.cache_data(ttl=30, show_spinner=False)
def _served_models(_backend: ChatBackend, backend_name: str) -> list[str]:
    return _backend.list_models()


def model_picker(backend: ChatBackend, prefix: str) -> str | None:
    """A sidebar choice among the served models (read from /v1/models); None means the default."""
    try:
        served = _served_models(backend, backend.name)
    except StudioError as exc:
        st.sidebar.warning(_("Could not list the server's models: {reason}").format(reason=shown(exc)))
        return None
    if len(served) <= 1:
        st.sidebar.caption(_("Model: {name}").format(name=backend.name))
        return None
    default = backend.default_model()
    index = served.index(default) if default in served else 0
    return st.sidebar.selectbox(_("Model"), served, index=index, key=f"{prefix}.model")


def stats_caption(figures: dict) -> str:
    """An answer's figures (`core.stats.Stats`, as saved) as the line under it."""
    stats = Stats.model_construct(**figures)  # read as saved: a stored message was checked when it was read
    parts = []
    if stats.first_token_s is not None:
        parts.append(_("first token {seconds} s").format(seconds=f"{stats.first_token_s:.2f}"))
    if stats.tokens_per_s:
        parts.append(_("{rate} tokens/s").format(rate=f"{stats.tokens_per_s:.1f}"))
    prompt, answer = stats.prompt_tokens or 0, stats.completion_tokens or 0
    parts.append(
        _("{total} tokens used ({prompt} prompt + {answer} answer)").format(
            total=f"{prompt + answer:,}", prompt=f"{prompt:,}", answer=f"{answer:,}"
        )
    )
    if stats.cached_tokens:
        parts.append(_("{count} prompt tokens reused from the last turn").format(count=f"{stats.cached_tokens:,}"))
    if stats.batched_with:
        parts.append(_("decoded together with {count} other answer(s)").format(count=stats.batched_with))
    if stats.finish_reason == "length":
        parts.append(_("stopped at max new tokens"))
    return " · ".join(parts)


AVATARS = {"tool": "🔧", "system": "⚙️"}  # turns an API conversation can hold besides user and assistant


def render_message(message: dict, extra: Callable[[dict], None] | None = None, avatar: str | None = None) -> None:
    """One message of the history; `avatar` (a persona's, one emoji checked by the registry) for answers."""
    avatar = avatar if message["role"] == "assistant" else None
    with st.chat_message(message["role"], avatar=avatar or AVATARS.get(message["role"])):
        for call in message.get("tool_calls") or []:  # an API client's function call: shown as plain text
            function = call["function"]
            st.code(f"{function['name']}({function['arguments']})", language=None)
        if message["role"] == "tool":
            st.code(message["content"], language=None)
        elif message["content"] or not message.get("tool_calls"):
            # Remote images become placeholders, links http(s) only, HTML stays text (see ui/safe_text).
            typed = message["role"] == "user"  # what a person typed keeps its indentation too
            shown = safe_markdown(message["content"], keep_lines=True, keep_indents=typed)
            st.markdown(shown or _("*(empty answer)*"))
        render_footer(message)
        if extra:
            extra(message)


def render_footer(message: dict) -> None:
    if message.get("cut"):
        st.caption(":orange[" + _("Stopped: this answer was cut off before it finished.") + "]")
    if message.get("dropped"):
        st.caption(
            _("{count} older messages were left out to fit the model's context.").format(count=message["dropped"])
        )
    if message.get("stats"):
        st.caption(stats_caption(message["stats"]))


def check_prompt(text: str | None) -> str | None:
    """The message to send, or None when there is nothing to send (shows why if it is too long)."""
    if text is None or not text.strip():
        return None
    limit = get_settings().max_prompt_chars
    if len(text) > limit:
        st.error(
            _(
                "Your message is {length} characters; the limit is {limit}. Nothing was sent. Shorten it, or ask "
                "whoever runs the studio to raise the limit (the setting MAX_PROMPT_CHARS)."
            ).format(length=f"{len(text):,}", limit=f"{limit:,}")
        )
        return None
    return text


def user_message(text: str) -> dict:
    return Message.user(text).as_state()
