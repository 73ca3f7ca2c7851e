"""The interface in 简体中文, English and Українська: every message the pages show is in each catalog, with the
same placeholders, those marked below the pages (errors and notes from core/, llm/, personas/, team/, rag/) too;
no page passes a bare English string to Streamlit; and the app, opened in Chinese or in Ukrainian, draws its words
from the catalog, an error made below the pages included (AppTest on the real entry point, a scripted backend)."""

from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.fake_backend import Reply, install
from ui import i18n

SOURCES = ["app.py", "pages", "ui"]
BELOW = ["core", "llm", "personas", "team", "rag"]  # their N_() messages reach the pages (scripts/i18n.sh); not server/
TRANSLATED = [language for language in i18n.LANGUAGES if language != i18n.SOURCE]
# Streamlit calls whose text a person reads: positional text arguments and the keywords below.
SHOWN = {
    "title", "header", "subheader", "caption", "markdown", "write", "text", "info", "warning", "error",
    "success", "toast", "button", "download_button", "form_submit_button", "link_button", "page_link",
    "checkbox", "toggle", "radio", "selectbox", "multiselect", "slider", "select_slider", "text_input",
    "text_area", "number_input", "file_uploader", "chat_input", "expander", "popover", "status", "spinner",
    "progress", "tabs", "metric", "Page", "set_page_config", "update",
}  # fmt: skip
SHOWN_KEYWORDS = {"label", "help", "placeholder", "title", "page_title", "text", "body"}
WORDS = re.compile(r"[A-Za-z]{3,}")
NOT_WORDS = {"Llama", "Studio", "orange", "red", "green"}  # the product's name; markdown colours
PAGE_FILE = re.compile(r"pages/\w+\.py")


def messages() -> set[str]:
    found = set()
    for folder in {(ROOT / s).parent if (ROOT / s).is_file() else ROOT / s for s in SOURCES + BELOW}:
        for _file, _line, message, _comments, _context in extract_from_dir(
            folder,
            method_map=[("app.py", "python")] if folder == ROOT else [("**.py", "python")],
            keywords={"_": None, "N_": None},
        ):
            if isinstance(message, str) and message:
                found.add(message)
    return found


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_the_pages_have_messages_and_babel_finds_them():
    found = messages()
    assert {"New chat", "Message the model", "System prompt", "Regenerate last answer"} <= found


def test_the_messages_marked_below_the_pages_are_found_too():
    found = messages()
    assert {
        "{file} is missing",  # llm/lora.py
        "No adapter named {model!r} is loaded. Press 'Refresh personas'.",  # llm/transformers_backend.py
        "name: {name} is taken; choose another.",  # personas/editing.py
        "No team named {name!r}. Teams are defined in TEAMS_FILE (teams.json).",  # team/run.py
        "Stopped: the run was stopped; what streamed until then is kept.",  # team/report.py
        "Search is not configured.",  # rag/pipeline.py
        "{path} is not valid TOML ({kind}). Fix or remove it.",  # core/settings.py
    } <= found


def test_an_error_is_english_for_logs_and_the_api_and_translated_where_shown():
    from core.errors import N_, StudioError, Text, english, translated

    chinese = i18n.catalog("zh_CN")
    inner = StudioError(N_("{file} is missing"), file="adapter_model.safetensors")
    outer = StudioError(N_("the adapter cannot be used: {reason}"), reason=inner)
    assert str(outer) == "the adapter cannot be used: adapter_model.safetensors is missing"  # as before
    assert translated(outer, english) == str(outer)
    shown = translated(outer, lambda m: chinese.get(m, m))
    assert shown == chinese["the adapter cannot be used: {reason}"].format(
        reason=chinese["{file} is missing"].format(file="adapter_model.safetensors")
    )
    assert "adapter_model.safetensors" in shown and "adapter" not in shown.replace("adapter_model", "")
    budget = Text(N_("logit_bias holds {count:,} entries; at most {limit} are accepted"), count=1234, limit=300)
    assert str(budget) == "logit_bias holds 1,234 entries; at most 300 are accepted"
    assert "1,234" in translated(ValueError(budget), lambda m: chinese.get(m, m))  # a validator's, as raised
    assert str(StudioError("plain text {not a field}")) == "plain text {not a field}"  # unmarked: as written


def test_the_team_report_speaks_the_pages_language_and_saves_english():
    from team import report
    from team.record import Limits, TeamRun, Turn

    run = TeamRun(team="t", team_display_name="T", task="?", limits=Limits(), ended_by="stopped", seconds=2.0)
    turn = Turn(round=1, expert="e", display_name="E", question="?", status="done", tokens=1200, seconds=1.5)
    ukrainian = i18n.catalog("uk")
    look_up = ukrainian.get
    assert report.ended_note(run) == "Stopped: the run was stopped; what streamed until then is kept."
    assert (
        report.ended_note(run, lambda m: look_up(m, m))
        == ukrainian["Stopped: the run was stopped; what streamed until then is kept."]
    )
    assert report.turn_status(turn) == "done · 1,200 tokens · 1.5 s"
    assert report.turn_status(turn, lambda m: look_up(m, m)) == "готово · токенів: 1,200 · 1.5 с"
    assert "budget tokens used" in report.markdown(run)  # the saved text stays English


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_with_the_same_placeholders(language):
    catalog = i18n.catalog(language)
    missing = sorted(m for m in messages() if m not in catalog)
    assert not missing, f"{language} lacks {len(missing)}: {missing[:10]} (run scripts/i18n.sh, then translate)"
    wrong = [m for m in messages() if placeholders(catalog[m]) != placeholders(m)]
    assert not wrong, f"{language}: placeholders differ in {wrong[:5]}"


def literal_text(node: ast.expr) -> str:
    """The literal words of a text expression: a string, an f-string's fixed parts, `+` and `a if c else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(literal_text(part) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal_text(node.left) + " " + literal_text(node.right)
    if isinstance(node, ast.IfExp):
        return literal_text(node.body) + " " + literal_text(node.orelse)
    return ""


def bare_texts(path: Path) -> list[str]:
    """Text arguments of Streamlit calls in `path` whose literal words do not come through `_()`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SHOWN):
            continue
        texts = list(node.args[:1]) + [k.value for k in node.keywords if k.arg in SHOWN_KEYWORDS]
        for text in texts:
            words = WORDS.sub(lambda m: "" if m.group() in NOT_WORDS else m.group(), literal_text(text))
            if WORDS.search(words) and not PAGE_FILE.fullmatch(literal_text(text)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {literal_text(text)[:60]!r}")
    return found


def test_no_page_shows_a_bare_english_string():
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]
    bare = [hit for path in files for hit in bare_texts(path)]
    assert not bare, "wrap these in _() from ui.i18n:\n" + "\n".join(bare)


@pytest.mark.parametrize(
    ("locale", "language"),
    [("zh-CN", "zh_CN"), ("zh-Hans-CN", "zh_CN"), ("zh", "zh_CN"), ("uk-UA", "uk"), ("en-GB", "en"), (None, "en")],
)
def test_the_browsers_locale_picks_the_language(locale, language):
    assert i18n.from_locale(locale) == language


def visible_text(at: AppTest) -> list[str]:
    shown = [e.value for kind in ("title", "caption", "info", "markdown") for e in getattr(at, kind)]
    shown += [b.label for b in at.button] + [w.label for w in [*at.text_area, *at.slider, *at.number_input]]
    shown += [e.label for e in at.expander] + [c.placeholder for c in at.chat_input]
    return shown


@pytest.mark.parametrize(
    ("language", "words"), [("zh_CN", ["聊天", "新对话", "系统提示词"]), ("uk", ["Чат", "Нова розмова"])]
)
def test_the_app_opened_in_a_language_speaks_it(monkeypatch, language, words):
    install(monkeypatch, Reply(["你好", "！"]))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params[i18n.QUERY_KEY] = language  # as a saved link or a reload after choosing it
    at.run()
    assert not at.exception, at.exception
    shown = visible_text(at)
    for word in words:
        assert any(word in text for text in shown), (word, shown)
    catalog = i18n.catalog(language)
    english = [t for t in shown if catalog.get(t, t) != t]  # a message shown as its English source
    assert not english, english
    at.chat_input(key="chat.input").set_value("你好").run()
    caption = at.chat_message[1].caption[-1].value
    assert caption.startswith(catalog["first token {seconds} s"].split("{")[0]), caption


def pick(at: AppTest, language: str) -> None:
    at.selectbox(key="ui_language_picker").set_value(i18n.LANGUAGES[language]).run()
    assert not at.exception, at.exception


def test_the_switch_changes_the_language_and_keeps_it_in_the_url(monkeypatch):
    install(monkeypatch)
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    assert any(b.label.endswith("New chat") for b in at.button)
    pick(at, "zh_CN")
    assert any(b.label.endswith("新对话") for b in at.button)
    assert at.query_params[i18n.QUERY_KEY] in ("zh_CN", ["zh_CN"])
    # (Back to the browser's own language, the URL's parameter goes: tests/test_i18n_browser.py, in Chromium.)


def test_the_help_says_what_the_options_descriptions_say():
    from llm.options import GenerationOptions
    from team.record import Limits
    from ui.chat import HELP
    from ui.team import LIMIT_HELP

    for model, helps in ((GenerationOptions, HELP), (Limits, LIMIT_HELP)):
        assert {name: model.model_fields[name].description for name in helps} == helps


def test_a_preset_moves_the_sliders_and_they_stay_movable(monkeypatch):
    from ui.chat import PRESETS

    install(monkeypatch)
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    assert at.slider(key="chat.temperature").help  # the option's description, as help
    at.button(key="chat.preset.Creative").click().run()
    assert at.slider(key="chat.temperature").value == PRESETS["Creative"]["temperature"]
    at.slider(key="chat.temperature").set_value(0.3).run()
    assert at.slider(key="chat.temperature").value == 0.3


def test_an_error_made_below_the_pages_is_shown_in_the_pages_language(tmp_path, monkeypatch):
    """A real failure: an adapter folder holding only a pickle .bin. `llm.lora` refuses it (an AdapterError), the
    registry keeps the refusal, and the Personas page, opened in Chinese, lists it in Chinese."""
    install(monkeypatch)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "persona.json").write_text(json.dumps({"display_name": "Broken"}), encoding="utf-8")
    (broken / "adapter_model.bin").write_bytes(b"pickle")
    monkeypatch.setenv("ADAPTERS_DIR", str(tmp_path))
    english = "only a pickle .bin adapter was found; loading it could run code. Convert it to safetensors"
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params[i18n.QUERY_KEY] = "zh_CN"
    at.switch_page("pages/1_Personas.py").run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.sidebar.caption if "broken" in c.value]
    assert captions and i18n.catalog("zh_CN")[english] in captions[0], captions
    assert english not in captions[0]


def test_a_team_problem_is_shown_in_the_pages_language(tmp_path, monkeypatch):
    install(monkeypatch)
    teams = tmp_path / "teams.json"
    entry = {"display_name": "Ghosts", "coordinator": "tutor", "experts": ["nobody-here"]}
    teams.write_text(json.dumps({"ghost": entry}), encoding="utf-8")
    monkeypatch.setenv("TEAMS_FILE", str(teams))
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params[i18n.QUERY_KEY] = "uk"
    at.switch_page("pages/3_Team.py").run()
    assert not at.exception, at.exception
    said = i18n.catalog("uk")[
        "names the persona {missing!r}, which does not exist (add it to personas.json or adapters/)"
    ]
    assert any(said.format(missing="nobody-here") in c.value for c in at.sidebar.caption), at.sidebar.caption
