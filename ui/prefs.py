"""Settings kept per browser across reloads: the sidebar's system prompt and sampling options, the last persona.

A reload is a new Streamlit session, so nothing in `st.session_state` survives it. Each kept part (`chat`, the
options of the Chat page; `chat_system`, its system prompt; `persona_choice`, the persona picked; ...) is one
cookie in the browser itself, `studio_<part>`, written by a zero-height script (as `ui.keys` adds its listener)
whenever the value changes, and read back by the server through `st.context.cookies` when the next session starts.
Two browsers never share them, and the server keeps nothing per user. No secret goes in: the password
(`ui.auth`) is never a part, and no part is read before the password was given.

What comes back is a stranger's text: a cookie is at most MAX_COOKIE_CHARS of base64url around a JSON object, or
it is ignored; each value is then checked by its page (the options by GenerationOptions' own ranges, a persona by
the registry) before it seeds a widget, and a bad one is dropped for the default. Nothing here raises on it.

A part seeds its widgets' keys only where the session has none yet (a new session, or a page shown again after
Streamlit dropped its widgets' state); from then on the widgets own the values, and `keep` writes each change.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

import streamlit as st
import streamlit.components.v1 as components
from pydantic import ValidationError

from llm.options import GenerationOptions

COOKIE_PREFIX = "studio_"
# A browser keeps ~4096 bytes per cookie, name and value together: the value stays well below.
MAX_COOKIE_CHARS = 3500
MAX_AGE_S = 365 * 24 * 3600  # a year; each write starts it again
PART = re.compile(r"[a-z][a-z_]{0,31}")  # part names are ours, so also safe in a cookie name and in the script
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
STATE_KEY = "prefs.kept"  # part -> the values this session last kept (the cookie's, until the first change)

# Written into the page's own document: the component's frame is replaced when the page redraws.
WRITER = """<script>
const page = window.parent;
const secure = page.location.protocol === "https:" ? "; Secure" : "";
page.document.cookie = "{name}={value}; Path=/; Max-Age={age}; SameSite=Strict" + secure;
</script>"""


def encode(values: Mapping) -> str | None:
    """`values` as a cookie value (base64url of compact JSON); None when it would be over MAX_COOKIE_CHARS."""
    text = json.dumps(dict(values), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    raw = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")
    return raw if len(raw) <= MAX_COOKIE_CHARS else None


def decode(raw: object) -> dict:
    """A cookie value as `encode` writes it -> its JSON object; {} for anything else (too long, not base64url,
    not UTF-8, not JSON, NaN or Infinity, nested too deep, not an object). Never raises."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_COOKIE_CHARS or not BASE64URL.fullmatch(raw):
        return {}
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
        data = json.loads(text, parse_constant=_no_constant)
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}
    return data if isinstance(data, dict) else {}


def options(data: Mapping, ranges: Mapping[str, tuple]) -> dict:
    """The sampling values of `data` (from a browser: untrusted) that GenerationOptions accepts and that lie in
    their widget's `ranges` (name -> (low, high, ...)), each as the options' own type; any other is dropped."""
    good = {}
    for name, (low, high, *_rest) in ranges.items():
        value = data.get(name)
        if name not in data or isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
            continue  # only what `keep` writes: a number, or nothing (the seed's "random")
        try:
            value = getattr(GenerationOptions(**{name: value}), name)
        except ValidationError:
            continue
        if value is None or ((low is None or low <= value) and (high is None or value <= high)):
            good[name] = value
    return good


def text_value(data: Mapping, name: str, limit: int = MAX_COOKIE_CHARS) -> dict:
    """`{name: data[name]}` when it is a string of at most `limit` characters (else {})."""
    value = data.get(name)
    return {name: value} if isinstance(value, str) and len(value) <= limit else {}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not kept")


def browser_cookies() -> Mapping[str, str]:
    """The cookies the browser sent when this session started (none outside a browser, e.g. in AppTest)."""
    return st.context.cookies


def kept(part: str) -> dict:
    """What this browser keeps for `part`: the cookie's object (unchecked: the caller checks each value), or the
    values `keep` was last given in this session."""
    store = st.session_state.setdefault(STATE_KEY, {})
    if part not in store:
        store[part] = decode(browser_cookies().get(COOKIE_PREFIX + _checked(part)))
    return store[part]


def seed(keys: Mapping[str, str], values: Mapping) -> None:
    """Set `st.session_state[key]` to `values[field]` for each `field: key` the session has no value for yet."""
    for field, key in keys.items():
        if field in values and key not in st.session_state:
            st.session_state[key] = values[field]


def keep(part: str, values: Mapping) -> bool:
    """Keep `values` (JSON-able) for `part` in this browser; nothing to keep deletes its cookie. False when they are
    too large for a cookie: then the browser forgets the part too (a reload brings the defaults, not older values)."""
    raw = encode(values) if values else ""
    st.session_state.setdefault(STATE_KEY, {})[part] = dict(values) if raw else {}
    name = COOKIE_PREFIX + _checked(part)
    script = WRITER.format(name=name, value=raw or "", age=MAX_AGE_S if raw else 0)
    with st.sidebar:
        components.html(script, height=0)  # on every run, so the sidebar's layout stays put; a rewrite is harmless
    return raw is not None


def _checked(part: str) -> str:
    if not PART.fullmatch(part):
        raise ValueError(f"not a part name: {part!r}")  # a programming error: part names are fixed in the code
    return part
