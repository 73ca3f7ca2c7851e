"""Names from outside (folder names, file keys, display names, titles) made safe to show and to carry.

A folder name can hold bytes that are not UTF-8 (a zip made on Windows): Python gives them as lone surrogates,
which pydantic, protobuf (Streamlit) and JSON all refuse. Bidi controls (right-to-left overrides and the like)
reorder the text drawn after them, so a name could pass for another or scramble the line it is shown in.
"""

from __future__ import annotations

import unicodedata

from core.errors import N_, Text

# Embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069), and the marks U+200E, U+200F, U+061C.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
REPLACEMENT = "\ufffd"
# Never shown as they are in a name: controls, format characters (bidi, zero-width), surrogates, line breaks.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def without_bidi_controls(text: str) -> str:
    """`text` with each bidi control replaced by U+FFFD, so it cannot reorder what is drawn after it."""
    if not BIDI_CONTROLS.intersection(text):
        return text
    return "".join(REPLACEMENT if c in BIDI_CONTROLS else c for c in text)


def escaped(text: str, limit: int = 64) -> str:
    """`text` (a name, or a message naming one) as text that is safe everywhere, at most `limit` characters: an
    undecodable byte (a surrogate escape) is written `\\xbb`, a control, format or lone surrogate character
    `\\u202e`; the rest is kept. Text cut short ends with "…", so a name never equals a different, valid one."""
    out = []
    for c in text:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape for the undecodable byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(c) in _ESCAPED_CATEGORIES:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(c)
    shown = "".join(out)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def no_control_characters(text: str, allow: str = "") -> str:
    """`text` unchanged; raises ValueError if it holds a control character not in `allow` (for validators)."""
    if any(unicodedata.category(c) == "Cc" and c not in allow for c in text):
        raise ValueError(Text(N_("must not contain control characters")))
    return text
