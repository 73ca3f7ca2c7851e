"""Words about saved things in the page's language: the store's errors, an import's refusal and the notes of a
saved team run are marked messages with values, English as `str()` (logs, the API, the other tests) and shown
translated by the pages (AppTest on the real entry point, a scripted backend)."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from core.conversation_schema import EXPORT_FORMAT, ImportRefused, parse_export
from core.errors import N_, Text, kept, restored, translated
from core.store import Store, StoreError
from tests.fake_backend import install
from ui import i18n

CORRUPT = "The conversation database {name} is corrupt. Move it away (a fresh one is made) to save again."
NOT_AN_EXPORT = 'Not a conversation export (expected "format": "{format}").'


def chinese(value) -> str:
    catalog = i18n.catalog("zh_CN")
    return translated(value, lambda m: catalog.get(m, m))


def open_app(language: str, page: str | None = None, query: dict | None = None) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.query_params.update({i18n.QUERY_KEY: language, **(query or {})})
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_store_error_is_english_as_text_and_chinese_where_shown(tmp_path):
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(b"not a database" * 100)
    try:
        Store(path)
    except StoreError as exc:
        error = exc
    assert str(error) == CORRUPT.format(name="conversations.sqlite3")  # as before: logs and the API
    assert chinese(error) == i18n.catalog("zh_CN")[CORRUPT].format(name="conversations.sqlite3")


def test_an_import_refusal_keeps_its_english_and_translates_the_validators_words():
    raw = json.dumps({"format": EXPORT_FORMAT, "page": "../etc", "messages": []}).encode()
    try:
        parse_export(raw)
    except ImportRefused as exc:
        refused = exc
    english = (
        "The file was not imported: page: must be chat, search, team or persona:NAME (NAME: letters, digits, - and _)."
    )
    assert str(refused) == english and "Value error" not in english  # pydantic's prefix is not ours
    shown = chinese(refused)
    assert "page" in shown and "persona:NAME" in shown and "Value error" not in shown, shown
    assert i18n.catalog("zh_CN")["The file was not imported: {problem}"].split("{")[0] in shown


def test_the_chat_page_in_chinese_says_the_database_is_corrupt_in_chinese(tmp_path, monkeypatch):
    data = tmp_path / "corrupt"
    data.mkdir()
    (data / "conversations.sqlite3").write_bytes(b"garbage" * 500)
    monkeypatch.setenv("DATA_DIR", str(data))
    install(monkeypatch)
    at = open_app("zh_CN")
    catalog = i18n.catalog("zh_CN")
    said = catalog[CORRUPT].format(name="conversations.sqlite3")
    warnings = [w.value for w in at.sidebar.warning]
    assert any(said in w for w in warnings), warnings
    assert not any("corrupt" in w or "not being saved" in w for w in warnings), warnings


def test_the_chat_page_in_chinese_refuses_an_import_in_chinese(monkeypatch):
    install(monkeypatch)
    at = open_app("zh_CN")
    at.file_uploader(key="chat.import").set_value(("x.json", b'{"messages": []}', "application/json")).run()
    assert not at.exception, at.exception
    said = i18n.catalog("zh_CN")[NOT_AN_EXPORT].format(format=EXPORT_FORMAT)
    errors = [e.value for e in at.sidebar.error]
    assert any(said in e for e in errors), errors
    assert not any("Not a conversation export" in e for e in errors), errors


def test_saved_words_come_back_with_their_message_id_and_values():
    inner = Text(N_("{file} is missing"), file="adapter_model.safetensors")
    note = Text(N_("the adapter cannot be used: {reason}"), reason=inner)
    data = json.loads(json.dumps(kept(note)))
    assert data["text"] == str(note)  # the English, beside the id and values
    back = restored(data)
    assert isinstance(back, Text) and str(back) == str(note) and chinese(back) == chinese(note)
    assert restored("plain English") == "plain English"  # saved before: as it was
    # A template that no longer gives the saved English, or one reaching into its values: the English as saved.
    assert type(restored({**data, "values": {"reason": "other"}})) is str
    hostile = {"text": "x", "id": "{a.__class__.__mro__}", "values": {"a": 1}}
    assert restored(hostile) == "x" and type(restored(hostile)) is str
    assert restored({"text": "1", "id": "{0}", "values": {"a": 1}}) == "1"  # a positional field: not formatted


def test_a_reopened_team_run_says_its_notes_in_the_pages_language(monkeypatch):
    from team import report
    from team.record import Limits, Step, TeamRun, Turn
    from ui.conversations import store
    from ui.safe_text import plain
    from ui.team import run_message

    install(monkeypatch)
    fallback = N_("The coordinator's plan was unusable ({problem}), so every expert was asked the task as given.")
    step = Step(round=1, kind="plan", text="{}", outcome="fallback")
    step.note = Text(fallback, problem=Text(N_("the plan asks no expert")))
    turn = Turn(round=1, expert="e", display_name="E", question="?", status="failed", tokens=3, seconds=0.5)
    turn.error = Text(N_("The answer failed."))
    run = TeamRun(
        team="t", team_display_name="T", task="What now?", limits=Limits(), steps=[step], turns=[turn], seconds=1.0
    )
    message = run_message(run)
    saved = message["team_run"]
    assert saved["steps"][0]["note"]["text"] == str(step.note)  # the English is kept in the record
    assert "so every expert was asked" in message["content"]  # and in the saved Markdown
    cid = store().create("team", "What now?", [{"role": "user", "content": "What now?"}, message])
    at = open_app("uk", "pages/3_Team.py", {"c": cid})
    ukrainian = i18n.catalog("uk")
    said = ukrainian[fallback].format(problem=ukrainian["the plan asks no expert"])
    assert any(said in w.value for w in at.warning), [w.value for w in at.warning]
    status = report.turn_status(turn, lambda m: ukrainian.get(m, m))
    assert ukrainian["The answer failed."] in status
    assert any(plain(status) in c.value for c in at.caption), [c.value for c in at.caption]
