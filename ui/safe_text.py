"""Untrusted text (model answers, messages, imports, personas, web results) made safe for `st.markdown`.

`safe_markdown` parses the text with markdown-it (CommonMark plus GFM tables and strikethrough, close to
what Streamlit renders) and writes it out again from the tokens: formatting is kept, but no image
survives (each becomes the text "[image: alt](`url`)", so nothing loads from another host), links keep
only http/https targets, escaped so a `)` in a URL cannot add markdown, and raw HTML is plain text.
Everything written out as text is escaped, so Streamlit's parser cannot find markup that markdown-it
did not. `plain` is for places that must show text only (titles in button labels, names, captions).
"""

from __future__ import annotations

import contextvars
import re
import string
from collections.abc import Iterable
from urllib.parse import urlsplit

import streamlit as st
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.tree import SyntaxTreeNode

from core.names import without_bidi_controls

_PUNCTUATION = frozenset(string.punctuation)
# Escaped wherever they appear in text: each can open markup (code, emphasis, links, HTML, tables,
# strikethrough, math), and "!" would make an image of a link written out right after it. `_` only when
# it is not inside a word (a_b is never emphasis, and stays readable in URLs); `&` only before an entity.
# `:` `/` `.` `-` stay, so GFM still links bare URLs.
_ALWAYS = frozenset("\\`*[]<>~|$!")
# Escaped at the start of a line: block markers (headings, lists, setext underlines, directives).
_LINE_START = frozenset("#+-=:")
_QUOTE_LIST_TABLE = frozenset(">*|~`")  # block markers among the always-escaped ones
_IMAGE_URL_SHOWN = 120  # characters of a blocked image's URL shown in its placeholder
_MATH_FORBIDS = frozenset("[]`")  # math whose content has these is shown as text (see _math)
_DEEPEST = 16  # block nesting (a list counts 2) past which text is shown as code; markdown-it stops at 20


def _math(state: StateInline, silent: bool) -> bool:
    """`$…$` / `$$…$$` math as Streamlit reads it (like a code span: n dollars open, n close).

    Its content is kept verbatim for KaTeX, which loads nothing. Content that could hold a link or an
    image if another parser disagreed about the span (brackets, backticks, tags) is left to be text."""
    start, src = state.pos, state.src
    if src[start] != "$":
        return False
    end = start
    while end < state.posMax and src[end] == "$":
        end += 1
    run = end - start
    if not hasattr(state, "math_runs"):  # last start of each run length: a run with no closer stops at once
        state.math_runs = _last_runs(src)
    search = end
    while state.math_runs.get(run, -1) >= search and (close := src.find("$", search, state.posMax)) != -1:
        after = close
        while after < state.posMax and src[after] == "$":
            after += 1
        if after - close == run:
            content = src[end:close]
            if not content.strip() or _MATH_FORBIDS & set(content) or _has_tag(content) or _line_marker(content):
                break
            if not silent:
                token = state.push("math_inline", "math", 0)
                token.markup, token.content = "$" * run, content
            state.pos = after
            return True
        search = after
    if not silent:
        state.append_pending("$" * run)
    state.pos = end
    return True


def _last_runs(src: str) -> dict[int, int]:
    runs, pos = {}, 0
    while (start := src.find("$", pos)) != -1:
        pos = start + 1
        while pos < len(src) and src[pos] == "$":
            pos += 1
        runs[pos - start] = start
    return runs


def _has_tag(text: str) -> bool:
    return any(c == "<" and (n.isalpha() or n in "/!?") for c, n in zip(text, text[1:]))


def _line_marker(text: str) -> bool:
    """A line inside multi-line math that could be read as a block marker once re-indented."""
    return any(_marker_length(line.lstrip(" \t"), _LINE_START | _QUOTE_LIST_TABLE) for line in text.split("\n")[1:])


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.inline.ruler.after("backticks", "math_inline", _math)
    return md


_MD = _parser()
_LIST_ITEM = re.compile(r"([-*+>]|\d{1,9}[.)])(\s|$)")
_BREAK: contextvars.ContextVar[str] = contextvars.ContextVar("soft_break", default="\n")  # see keep_lines


def safe_markdown(text: str, keep_lines: bool = False, keep_indents: bool = False) -> str:
    """`text` as markdown that renders the same, minus remote images, unsafe links and raw HTML.

    `keep_lines` (chat messages): every line break shows as one, as a chat app shows a poem; markdown alone
    joins such lines into one. `keep_indents` (what a person typed): a line's leading spaces stay too, as in
    pasted code that was not fenced (list items keep their markdown meaning)."""
    if keep_indents:
        text = _indents_kept(text)
    tokens = _MD.parse(text)
    if any(token.level >= _DEEPEST for token in tokens):
        return _fence(text, "")  # nested deeper than the parser keeps (it drops the rest): shown as code
    token = _BREAK.set("\\\n" if keep_lines else "\n")
    try:
        return _blocks(SyntaxTreeNode(tokens).children, tight=False).strip("\n")
    finally:
        _BREAK.reset(token)


def _indents_kept(text: str) -> str:
    """Leading spaces and tabs outside fenced code as no-break spaces, which markdown keeps."""
    lines, fenced = text.split("\n"), False
    for i, line in enumerate(lines):
        stripped = line.lstrip(" \t")
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and stripped and stripped != line and not _LIST_ITEM.match(stripped):
            indent = line[: len(line) - len(stripped)].replace("\t", "    ")
            lines[i] = "\u00a0" * len(indent) + stripped
    return "\n".join(lines)


def plain(text: str) -> str:
    """`text` shown exactly as written, on one line: every markdown character escaped. Bidi controls become
    U+FFFD (`core.names.without_bidi_controls`): a title or name cannot reorder itself or what follows it."""
    return "".join("\\" + c if c in _PUNCTUATION else " " if c in "\r\n" else c for c in without_bidi_controls(text))


def code_span(text: str) -> str:
    """`text` as inline code on one line: shown exactly as written, and nothing in it becomes a link."""
    return _code_span(" ".join(without_bidi_controls(text).splitlines()).strip() or "-")


def link(text: str, url: str) -> str:
    """A markdown link to an http(s) `url` with `text` shown as written; only the text for other URLs."""
    target = _destination(_MD.normalizeLink(url.strip()))
    return f"[{plain(text)}]({target})" if target else plain(text)


def write_stream(pieces: Iterable[str]) -> str:
    """`st.write_stream` for untrusted text: each update redraws the answer so far through
    `safe_markdown` (an image half-written stays text until it is whole, then becomes a placeholder).
    Returns the whole text. Pieces should come already grouped (see `ui.answer.coalesce`)."""
    box, text = None, ""
    for piece in pieces:
        if not piece:
            continue
        text += piece
        box = box or st.empty()
        box.markdown(safe_markdown(text, keep_lines=True))  # as `ui.chat.render_message` draws it after
    return text


# --- writing markdown back from the tree ---


def _destination(href: str) -> str | None:
    """A link target Streamlit reads back unchanged, or None when it is not http(s)."""
    try:
        parts = urlsplit(href)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return "".join("\\" + c if c in "\\()[]<>`" else "%20" if c.isspace() else c for c in href)


def _blocks(nodes: list[SyntaxTreeNode], tight: bool) -> str:
    out: list[str] = []
    for node in nodes:
        text = _block(node)
        if text is None:
            continue
        if out:
            # In a tight list item, a paragraph goes straight on to a nested list or fence (no blank line).
            follows = tight and node.type in ("bullet_list", "ordered_list", "fence", "code_block", "heading")
            out.append("\n" if follows and _opens_after_paragraph(node) else "\n\n")
        out.append(text)
    return "".join(out)


def _opens_after_paragraph(node: SyntaxTreeNode) -> bool:
    """Whether `node` may follow a paragraph line directly (CommonMark: a list only from 1 and not empty)."""
    if node.type not in ("bullet_list", "ordered_list"):
        return True
    return bool(node.children[0].children) and int(node.attrs.get("start", 1)) == 1


def _block(node: SyntaxTreeNode) -> str | None:
    kind = node.type
    if kind == "paragraph":
        return _inline_of(node)
    if kind == "heading":
        text = _inline_of(node).replace("\n", " ")
        if text.endswith("#"):  # would be read as a closing sequence
            text = text.rstrip("#") + "\\" + "#" * (len(text) - len(text.rstrip("#")))
        return "#" * int(node.tag[1]) + " " + text
    if kind in ("fence", "code_block"):
        return _fence(node.content, node.info if kind == "fence" else "")
    if kind == "hr":
        return "***"  # never a setext underline, unlike ---
    if kind == "blockquote":
        return _prefix(_blocks(node.children, tight=False), "> ", "> ")
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        lines = [_text(line.strip(), line_start=True) for line in node.content.strip("\n").split("\n")]
        return "\n".join(lines)
    if node.children:
        return _blocks(node.children, tight=False)
    return None


def _inline_of(node: SyntaxTreeNode) -> str:
    inline = node.children[0] if node.children else None
    return _inline(inline.children) if inline is not None else ""


def _prefix(text: str, first: str, rest: str) -> str:
    lines = text.split("\n")
    return "\n".join((first if i == 0 else rest) + line for i, line in enumerate(lines)).rstrip(" ")


def _list(node: SyntaxTreeNode) -> str:
    ordered = node.type == "ordered_list"
    start = int(node.attrs.get("start", 1)) if ordered else 0
    tight = any(p.hidden for item in node.children for p in item.children if p.type == "paragraph")
    items = []
    for n, item in enumerate(node.children):
        marker = f"{start + n}{node.markup}" if ordered else node.markup
        body = _blocks(item.children, tight)
        body = _task_box(item, body)
        items.append(_prefix(body, marker + " ", " " * (len(marker) + 1)) if body else marker)
    return ("\n" if tight else "\n\n").join(items)


def _task_box(item: SyntaxTreeNode, body: str) -> str:
    """GFM task items (`- [ ] x`, `- [x] x`) keep their checkbox: the brackets are put back unescaped."""
    for box in ("[ ]", "[x]", "[X]"):
        escaped = "\\[" + box[1] + "\\]"
        if body.startswith(escaped + " ") and item.children and item.children[0].type == "paragraph":
            return box + body[len(escaped) :]
    return body


def _fence(content: str, info: str) -> str:
    longest, run = 0, 0
    for c in content:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    language = "".join(c for c in info.split(" ")[0] if c.isalnum() or c in "+-_.#")[:30]
    return (
        f"{fence}{language}\n{content.rstrip(chr(10))}\n{fence}"
        if content.strip("\n")
        else f"{fence}{language}\n{fence}"
    )


def _table(node: SyntaxTreeNode) -> str:
    rows, aligns = [], []
    for section in node.children:
        for tr in section.children:
            cells = [_inline_of(cell).replace("\n", " ") for cell in tr.children]
            rows.append("| " + " | ".join(cells) + " |")
            if section.type == "thead":
                aligns = [str(cell.attrs.get("style", "")).removeprefix("text-align:") for cell in tr.children]
    line = {"left": ":--", "right": "--:", "center": ":-:"}
    rows.insert(1, "| " + " | ".join(line.get(a, "---") for a in aligns) + " |")
    return "\n".join(rows)


def _inline(nodes: list[SyntaxTreeNode]) -> str:
    out: list[str] = []
    line_start = True
    for node in nodes:
        kind = node.type
        if kind == "text":
            out.append(_text(node.content, line_start))
        elif kind == "softbreak":
            out.append(_BREAK.get())
        elif kind == "hardbreak":
            out.append("\\\n")
        elif kind == "code_inline":
            out.append(_code_span(node.content))
        elif kind == "math_inline":
            out.append(node.markup + node.content + node.markup)
        elif kind in ("em", "strong", "s"):
            out.append(node.markup + _inline(node.children) + node.markup)
        elif kind == "link":
            out.append(_link(node))
        elif kind == "image":
            out.append(_image(node))
        elif kind == "html_inline":
            out.append(_text(node.content.replace("\n", " "), line_start))
        else:
            out.append(_inline(node.children) if node.children else _text(node.content, line_start))
        line_start = kind in ("softbreak", "hardbreak")
    return "".join(out)


def _text(text: str, line_start: bool) -> str:
    out = []
    for i, c in enumerate(text):
        if c in _ALWAYS or (c == "_" and not _inside_word(text, i)) or (c == "&" and _entity_follows(text, i)):
            out.append("\\" + c)
        else:
            out.append(c)
    escaped = "".join(out)
    if line_start:
        escaped = escaped.lstrip(" \t")
        if marker := _marker_length(escaped, _LINE_START):  # the others are escaped already
            escaped = escaped[: marker - 1] + "\\" + escaped[marker - 1 :]
    return escaped


def _marker_length(line: str, firsts: frozenset) -> int:
    """How far into `line` a block marker ends ("#", "-", "1." …), 0 if it starts none."""
    if line[:1] in firsts:
        return 1
    digits = len(line) - len(line.lstrip(string.digits))
    return digits + 1 if 0 < digits <= 9 and line[digits : digits + 1] in (".", ")") else 0


def _inside_word(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _entity_follows(text: str, i: int) -> bool:
    end = text.find(";", i + 1, i + 34)
    return end > i + 1 and all(c.isalnum() or c == "#" for c in text[i + 1 : end])


def _code_span(content: str) -> str:
    longest, run = 0, 0
    for c in content:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    # The parser strips one space from each side when both have one (unless all are spaces); a backtick
    # at either end would join the fence. Padding both sides covers both.
    ends = content[:1] + content[-1:]
    pad = " " if content.strip(" ") and ("`" in ends or ends == "  ") else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def _link(node: SyntaxTreeNode) -> str:
    text = _inline(node.children)
    target = _destination(str(node.attrs.get("href", "")))
    return f"[{text}]({target})" if target and text else text


def _image(node: SyntaxTreeNode) -> str:
    alt = "".join(child.content for child in node.walk(include_self=False) if child.type in ("text", "code_inline"))
    url = str(node.attrs.get("src", ""))
    if len(url) > _IMAGE_URL_SHOWN:
        url = url[:_IMAGE_URL_SHOWN] + "…"
    # Shown as text; the URL as code, so GFM does not make a link of it either (one click would send it).
    return plain(f"[image: {alt}]") + "(" + _code_span(url) + ")"
