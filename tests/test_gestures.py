"""The gestures under a message (ui/gestures.py): edit, regenerate any answer, continue, 👍/👎 and ‹ k/n › between
versions, through the chat page's AppTest with a scripted backend (tests/fake_backend.py); the versions live in
the store, survive a reload and travel in exports."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from tests.fake_backend import Reply, install
from tests.test_store import chat_app, open_page, url_cid


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input(key="chat.input").set_value(text).run()
    assert not at.exception, at.exception
    return at


def history(at: AppTest, key: str = "chat.messages") -> list[str]:
    return [m["content"] for m in at.session_state[key]]


def shown(at: AppTest) -> list[str]:
    return [m.markdown[0].value for m in at.chat_message]


def edit(at: AppTest, mid: str, text: str) -> AppTest:
    at.text_area(key=f"chat.edit.{mid}").set_value(text)
    at.button(key=f"chat.edit.{mid}.send").click().run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def loaded(cid: str):
    from ui.conversations import store

    return store().load(cid)


def test_edit_makes_a_version_and_the_arrows_switch_between_them(monkeypatch):
    fake = install(monkeypatch, Reply(["Paris."]), Reply(["Lyon."]))
    at = send(chat_app(), "Capital of France?")
    cid, first = url_cid(at), at.session_state["chat.messages"][0]
    edit(at, first["id"], "Second city of France?")
    assert history(at) == ["Second city of France?", "Lyon."]
    assert fake.calls[-1].messages[-1] == {"role": "user", "content": "Second city of France?"}
    assert len(fake.calls[-1].messages) == 2  # system + the edited question only: the old turn is not fed
    edited = at.session_state["chat.messages"][0]
    assert edited["parent"] is None and edited["id"] != first["id"]
    assert "2/2" in [c.value for c in at.caption]
    assert at.button(key=f"chat.version.{edited['id']}.next").disabled
    click(at, f"chat.version.{edited['id']}.previous")
    assert history(at) == ["Capital of France?", "Paris."] and shown(at) == ["Capital of France?", "Paris."]
    assert "1/2" in [c.value for c in at.caption]
    stored = loaded(cid)  # saved at the end of the run: the branch shown, the other version beside it
    assert [m["content"] for m in stored.messages] == ["Capital of France?", "Paris."]
    assert sorted(m["content"] for m in stored.others) == ["Lyon.", "Second city of France?"]
    # a reload (a new browser session) shows the same branch, and its arrows still work
    again = open_page(query={"c": cid})
    assert shown(again) == ["Capital of France?", "Paris."]
    click(again, f"chat.version.{first['id']}.next")
    assert history(again) == ["Second city of France?", "Lyon."]


def test_regenerate_a_middle_answer_keeps_the_rest_as_a_version(monkeypatch):
    fake = install(monkeypatch, Reply(["One."]), Reply(["Two."]), Reply(["Uno."]))
    at = send(send(chat_app(), "Count."), "Again.")
    old = at.session_state["chat.messages"][1]
    click(at, f"chat.regen.{old['id']}")
    assert history(at) == ["Count.", "Uno."]
    assert [m["content"] for m in fake.calls[-1].messages[1:]] == ["Count."]
    new = at.session_state["chat.messages"][1]
    assert new["parent"] == at.session_state["chat.messages"][0]["id"]
    click(at, f"chat.version.{new['id']}.previous")
    assert history(at) == ["Count.", "One.", "Again.", "Two."]  # the old answer, and what followed it


def test_a_regenerate_that_fails_before_any_text_leaves_the_old_answer(monkeypatch):
    from llm.interface import BackendError

    install(monkeypatch, Reply(["One."]), Reply([], error=BackendError("The server went away.")))
    at = send(chat_app(), "Count.")
    old = at.session_state["chat.messages"][1]
    click(at, f"chat.regen.{old['id']}")
    assert "went away" in at.error[0].value
    assert history(at) == ["Count.", "One."] and at.session_state["chat.messages"][1] is not None
    assert at.session_state["chat.messages"][1]["id"] == old["id"]
    assert len(at.session_state["chat.messages.others"]) == 0  # the empty attempt is not kept
    at.run()
    assert shown(at) == ["Count.", "One."]


def test_continue_feeds_the_cut_answer_back_and_grows_the_same_message(monkeypatch):
    fake = install(monkeypatch, Reply(["Once", " upon", " a"]), Reply([" a", " time."]))
    at = send(chat_app(max_new=2), "Tell a story.")
    answer = at.session_state["chat.messages"][1]
    assert answer["stats"]["finish_reason"] == "length"
    click(at, f"chat.continue.{answer['id']}")
    call = fake.calls[-1]
    assert call.options.continue_final_message and call.messages[-1] == {"role": "assistant", "content": "Once upon"}
    grown = at.session_state["chat.messages"][1]
    assert history(at) == ["Tell a story.", "Once upon a time."] and grown["id"] == answer["id"]
    assert shown(at) == ["Tell a story.", "Once upon a time."]  # one answer, not two
    assert grown["stats"]["completion_tokens"] == 4
    assert [m["content"] for m in loaded(url_cid(at)).messages] == ["Tell a story.", "Once upon a time."]


def test_feedback_is_stored_and_exported(monkeypatch):
    install(monkeypatch, Reply(["Yes."]))
    at = send(chat_app(), "Is water wet?")
    answer = at.session_state["chat.messages"][1]
    at.feedback(key=f"chat.feedback.{answer['id']}").set_value(1).run()  # 👍
    assert at.session_state["chat.messages"][1]["feedback"] == "up"
    cid = url_cid(at)
    from ui.conversations import store

    assert store().export_json(cid)["messages"][1]["feedback"] == "up"
    again = open_page(query={"c": cid})
    assert again.feedback(key=f"chat.feedback.{answer['id']}").value == 1


def test_versions_survive_export_and_import(monkeypatch):
    install(monkeypatch, Reply(["A."]), Reply(["B."]))
    at = send(chat_app(), "Q?")
    click(at, f"chat.regen.{at.session_state['chat.messages'][1]['id']}")
    from ui.conversations import store

    db = store()
    copy = db.import_json(json.loads(json.dumps(db.export_json(url_cid(at)))))
    again = open_page(query={"c": copy})
    assert shown(again) == ["Q?", "B."] and "2/2" in [c.value for c in again.caption]
    click(again, f"chat.version.{again.session_state['chat.messages'][1]['id']}.previous")
    assert history(again) == ["Q?", "A."]


def test_an_edit_on_a_conversation_deleted_in_another_tab_goes_on_in_a_new_one(monkeypatch):
    install(monkeypatch, Reply(["A."]), Reply(["B."]))
    at = send(chat_app(), "First?")
    cid = url_cid(at)
    from ui.conversations import store

    store().delete(cid)  # another tab
    edit(at, at.session_state["chat.messages"][0]["id"], "Edited?")
    assert history(at) == ["Edited?", "B."]
    assert url_cid(at) != cid and [m["content"] for m in loaded(url_cid(at)).messages] == ["Edited?", "B."]
    assert any("deleted in another tab" in i.value for i in at.sidebar.info)


def test_an_edit_of_a_message_no_longer_there_hands_the_text_back(monkeypatch):
    install(monkeypatch, Reply(["A."]))
    at = send(chat_app(), "First?")
    at.session_state["chat.messages.request"] = {"kind": "edit", "id": "gone", "text": "My careful edit."}
    at.run()
    assert "no longer in this conversation" in at.warning[0].value
    assert "My careful edit." in [c.value for c in at.code]
    assert history(at) == ["First?", "A."]


def test_on_the_search_page_an_answer_is_regenerated_with_a_new_search_and_has_no_continue(player, monkeypatch):
    from tests.test_search_page import CX, KEY, PAGE

    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_CSE_ID", CX)
    monkeypatch.setenv("GOOGLE_CSE_ENDPOINT", player + "/")
    install(monkeypatch, Reply(["It", " is", " 330 m [1]."]), Reply(["About 330 metres [1]."]))
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.switch_page(PAGE).run()
    at.number_input(key="search.max_new").set_value(2)  # the first answer stops at max new tokens
    at.chat_input(key="search.input").set_value("How tall is the Eiffel Tower?").run()
    assert not at.exception, at.exception
    first = at.session_state["search.messages"][1]
    assert first["stats"]["finish_reason"] == "length"
    assert not [b for b in at.button if b.key == f"search.continue.{first['id']}"]  # a search answer is redone
    at.number_input(key="search.max_new").set_value(64)
    click(at, f"search.regen.{first['id']}")
    answers = at.session_state["search.messages"]
    assert [m["role"] for m in answers] == ["user", "assistant"] and answers[1]["content"] == "About 330 metres [1]."
    assert answers[1]["sources"] and "2/2" in [c.value for c in at.caption]
    click(at, f"search.version.{answers[1]['id']}.previous")
    assert at.session_state["search.messages"][1]["id"] == first["id"]


def test_on_the_team_page_a_run_is_run_again_as_a_version(monkeypatch):
    from tests.test_team_page import PAGE

    install(monkeypatch)  # every step answers "Hello there.": the plan falls back, the experts and synthesis answer
    at = AppTest.from_file("../app.py", default_timeout=180)
    at.switch_page(PAGE).run()
    at.chat_input(key="team.input").set_value("Plan a picnic.").run()
    assert not at.exception, at.exception
    first = at.session_state["team.messages"][1]
    assert first.get("team_run") and not [b for b in at.button if b.key == f"team.continue.{first['id']}"]
    click(at, f"team.regen.{first['id']}")
    runs = at.session_state["team.messages"]
    assert [m["role"] for m in runs] == ["user", "assistant"] and runs[1]["id"] != first["id"]
    assert runs[1].get("team_run") and "2/2" in [c.value for c in at.caption]
    click(at, f"team.version.{runs[1]['id']}.previous")
    assert at.session_state["team.messages"][1]["id"] == first["id"]
