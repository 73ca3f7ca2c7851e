"""Text from outside that Python holds but nothing else can: lone UTF-16 surrogates.

JSON may spell one (`"\\ud800"`), and Python's json module then gives a str that SQLite, protobuf (Streamlit) and
pydantic's constrained strings all refuse. Whoever parses outside JSON finds them here, with their place, and
refuses them naming it."""

from __future__ import annotations

import re

SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_at(data, separator: str = ".") -> str | None:
    """The place (`messages.0.content`) of the first string or key holding a lone surrogate; "" for the top
    value; None when there is none. Iterative, and each place is spelled out only when found: the value may be
    deep and wide."""
    stack = [(data, None)]  # (value, (key, parent's place) or None for the top)
    while stack:
        value, place = stack.pop()
        if isinstance(value, str):
            if SURROGATE.search(value):
                return _spell(place, separator)
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if isinstance(key, str) and SURROGATE.search(key):
                    return _spell((key, place), separator)
                stack.append((item, (key, place)))
        elif isinstance(value, list):
            stack.extend((item, (index, place)) for index, item in reversed(list(enumerate(value))))
    return None


def _spell(place, separator: str) -> str:
    parts = []
    while place is not None:
        key, place = place
        parts.append(str(key).encode("utf-8", "backslashreplace").decode())  # the message must be valid text too
    return separator.join(reversed(parts))
