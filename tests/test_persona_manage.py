"""The persona page's "Manage personas" view through AppTest on the app's entry point, with a scripted backend
(tests/fake_backend.py) and the real registry, files and card parser: the tutorial's adapter folder without a
persona.json gets a form, prompt personas are added, edited and deleted, character cards are imported, hostile
ones refused with a message."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import pytest
from PIL import Image, PngImagePlugin
from streamlit.testing.v1 import AppTest

from personas.registry import PersonaCard
from tests.conftest import ROOT
from tests.fake_backend import install

PAGE = "pages/1_Personas.py"
SHIPPED = ROOT / "adapters" / "captain-quill"
DEMO = "SmolLM2-135M-Instruct (demo)"  # what the shipped adapter's config names, and the demo model's name


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """An adapters folder holding the tutorial's checkpoint copy (`huanhuan`: weights, config and trainer state,
    no persona.json) beside the shipped Captain Quill, and a copy of the shipped personas file."""
    adapters = tmp_path / "adapters"
    shutil.copytree(SHIPPED, adapters / "captain-quill")
    tutorial = adapters / "huanhuan"
    tutorial.mkdir()
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(SHIPPED / name, tutorial / name)
    (tutorial / "trainer_state.json").write_text(json.dumps({"global_step": 126, "log_history": []}))
    personas = tmp_path / "personas.json"
    shutil.copy(ROOT / "personas.json", personas)
    monkeypatch.setenv("ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("PERSONAS_FILE", str(personas))
    return adapters, personas


def manage_page(monkeypatch, base_name: str | None = DEMO):
    fake = install(monkeypatch)
    fake.base_name = base_name  # as the in-process engine: adapters are checked against the loaded model
    fake.is_server = base_name is None
    fake.name = base_name or fake.name
    at = AppTest.from_file("../app.py", default_timeout=60)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    at.radio(key="persona.view").set_value("Manage personas").run()
    assert not at.exception, at.exception
    return at, fake


def listed(at: AppTest) -> list[str]:
    """The persona picker's entries, as shown (avatar, name, kind)."""
    return at.selectbox(key="persona.current").options


def shown(at: AppTest, kinds=("error", "warning", "success", "caption")) -> str:
    """The page's messages as read, markdown escapes (`plain`) taken out."""
    return " | ".join(e.value for kind in kinds for e in getattr(at, kind)).replace("\\", "")


def fill(at: AppTest, prefix: str, **values: str) -> None:
    for key, value in values.items():
        widget = at.text_area(key=f"{prefix}{key}") if key in ("sys", "greeting") else at.text_input(key=prefix + key)
        widget.set_value(value)


def test_the_tutorials_adapter_folder_gets_a_form_and_becomes_a_persona(folders, monkeypatch):
    adapters, _ = folders
    at, fake = manage_page(monkeypatch)
    assert not [o for o in listed(at) if "LoRA" in o and "Captain" not in o]
    assert any("persona.json is missing" in c.value for c in at.sidebar.caption)
    prefix = "persona.create.huanhuan"
    assert at.text_input(key=f"{prefix}.base_model").value == DEMO  # read from adapter_config.json
    assert "the loaded model, SmolLM2-135M-Instruct (demo), is the same" in shown(at)
    at.text_input(key=f"{prefix}.display_name").set_value("甄嬛")
    at.text_area(key=f"{prefix}.system_prompt").set_value("现在你要扮演皇帝身边的女人--甄嬛")
    at.text_input(key=f"{prefix}.greeting").set_value("臣妾甄嬛，给皇上请安。")
    at.text_input(key=f"{prefix}.avatar").set_value("🌸")
    at.button(key=f"{prefix}.submit").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    card = PersonaCard.model_validate_json((adapters / "huanhuan" / "persona.json").read_text())
    assert (card.display_name, card.avatar, card.base_model) == ("甄嬛", "🌸", DEMO)
    assert card.system_prompt == "现在你要扮演皇帝身边的女人--甄嬛"
    assert "🌸 甄嬛 (LoRA)" in listed(at)  # no restart
    assert "Created the persona huanhuan" in at.success[0].value
    assert fake.adapters["huanhuan"] == adapters / "huanhuan"
    assert not [w for w in at.text_input if str(w.key).startswith(prefix)]  # the form is gone

    from runtime import get_registry
    from server.api.catalog import targets

    models = targets(fake, get_registry(fake).personas())  # what /v1/models lists
    assert models["huanhuan"].backend_model == "huanhuan" and models["huanhuan"].system_prompt.startswith("现在")
    at.radio(key="persona.view").set_value("Chat").run()
    at.selectbox(key="persona.current").set_value("huanhuan").run()
    assert at.title[0].value.startswith("🌸") and at.chat_message[0].markdown[0].value == "臣妾甄嬛，给皇上请安。"


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("avatar", "/etc/passwd", "avatar: must be a single emoji"),
        ("display_name", "", "display_name: String should have at least 1 character"),
        ("display_name", "x" * 81, "display_name: String should have at most 80 characters"),
        ("system_prompt", "y" * 8001, "system_prompt: String should have at most 8000 characters"),
        ("greeting", "hi\x00there", "greeting: must not contain control characters"),
        ("base_model", "", "base_model: name the model the adapter was trained on"),
    ],
)
def test_a_bad_field_is_refused_naming_it_and_nothing_is_written(folders, monkeypatch, field, value, named):
    adapters, _ = folders
    at, _fake = manage_page(monkeypatch)
    prefix = "persona.create.huanhuan"
    widget = at.text_area if field == "system_prompt" else at.text_input
    widget(key=f"{prefix}.{field}").set_value(value)
    at.button(key=f"{prefix}.submit").click().run()
    assert not at.exception
    assert any(named in e.value for e in at.error), [e.value for e in at.error]
    assert not (adapters / "huanhuan" / "persona.json").exists()
    assert [o for o in listed(at) if "(LoRA)" in o] == ["⚓ Captain Quill (LoRA)"]


def test_another_base_model_is_said_clearly(folders, monkeypatch):
    adapters, _ = folders
    at, _fake = manage_page(monkeypatch, base_name="Meta-Llama-3.1-8B-Instruct")
    warning = shown(at, ["warning"])
    assert "trained on SmolLM2-135M-Instruct (demo), but the loaded model is Meta-Llama-3.1-8B-Instruct" in warning
    at.button(key="persona.create.huanhuan.submit").click().run()
    assert (adapters / "huanhuan" / "persona.json").exists()  # written as it is true; the registry says why not
    assert not [o for o in listed(at) if "🎭 huanhuan" in o]
    assert any("huanhuan" in c.value and "trained on" in c.value for c in at.sidebar.caption)


def test_prompt_personas_are_added_edited_and_deleted_and_nothing_else_is_lost(folders, monkeypatch):
    _, personas = folders
    before = json.loads(personas.read_text())
    personas.write_text(json.dumps({**before, "Odd key!": {"display_name": 5}}, ensure_ascii=False))  # refused
    at, _fake = manage_page(monkeypatch)
    new = "persona.edit.+new."
    fill(at, new, name="poet", display="Poet", sys="You answer in verse.", greeting="Hark!", avatar="🪶")
    at.button(key=new + "save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "🪶 Poet (prompt)" in listed(at)
    stored = json.loads(personas.read_text())
    assert list(stored) == [*before, "Odd key!", "poet"] and stored["Odd key!"] == {"display_name": 5}
    assert {k: stored[k] for k in before} == before

    at.selectbox(key="persona.edit.pick").set_value("poet").run()
    edit = "persona.edit.poet."
    assert at.text_area(key=edit + "sys").value == "You answer in verse."
    at.text_input(key=edit + "avatar").set_value("not an emoji")
    at.button(key=edit + "save").click().run()
    assert any("avatar: must be a single emoji" in e.value for e in at.error)
    at.text_input(key=edit + "avatar").set_value("🎻")
    at.text_area(key=edit + "sys").set_value("You answer in rhyming couplets.")
    at.button(key=edit + "save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert json.loads(personas.read_text())["poet"]["system_prompt"] == "You answer in rhyming couplets."
    assert "🎻 Poet (prompt)" in listed(at)

    at.selectbox(key="persona.edit.pick").set_value("poet").run()
    assert at.button(key="persona.edit.poet.delete").disabled  # not without the confirmation
    at.checkbox(key="persona.edit.poet.sure").check().run()
    at.button(key="persona.edit.poet.delete").click().run()
    assert not at.exception
    assert "poet" not in json.loads(personas.read_text()) and not [o for o in listed(at) if "Poet" in o]
    assert {k: json.loads(personas.read_text())[k] for k in before} == before


def test_an_edit_made_meanwhile_elsewhere_is_not_overwritten(folders, monkeypatch):
    _, personas = folders
    at, _fake = manage_page(monkeypatch)
    at.selectbox(key="persona.edit.pick").set_value("dummy").run()
    other = json.loads(personas.read_text())
    other["dummy"]["greeting"] = "Changed in another tab."
    other["added-elsewhere"] = {"display_name": "Elsewhere"}
    personas.write_text(json.dumps(other))
    at.text_input(key="persona.edit.dummy.avatar").set_value("🦆")
    at.button(key="persona.edit.dummy.save").click().run()
    assert any("changed by someone else meanwhile" in e.value for e in at.error)
    assert json.loads(personas.read_text()) == other
    at.run()  # the form now shows the entry as it is
    at.selectbox(key="persona.edit.pick").set_value("added-elsewhere").run()
    at.text_input(key="persona.edit.added-elsewhere.avatar").set_value("🦆")
    at.button(key="persona.edit.added-elsewhere.save").click().run()
    assert not at.error
    assert json.loads(personas.read_text())["dummy"]["greeting"] == "Changed in another tab."


def card_json(spec: str = "chara_card_v2", **data) -> dict:
    fields = {
        "name": "Seraphina",
        "description": "{{char}} is a guardian of the forest glade.",
        "personality": "kind, protective",
        "scenario": "{{user}} wakes up in {{char}}'s cottage.",
        "first_mes": "*Seraphina smiles.* You're awake, {{user}}.",
        "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: I am Seraphina.",
        "extensions": {"talkativeness": "0.6", "depth_prompt": {"prompt": "Stay gentle.", "depth": 4}},
        **data,
    }
    return {"spec": spec, "spec_version": "3.0" if spec.endswith("v3") else "2.0", "data": fields}


def card_png(chunks: dict[str, str], size=(8, 8)) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def b64(card: dict) -> str:
    return base64.b64encode(json.dumps(card).encode()).decode()


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    mime = "image/png" if name.endswith(".png") else "application/json"
    at.file_uploader(key="persona.card.file").set_value((name, data, mime)).run()
    at.button(key="persona.card.import").click().run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize(
    ("filename", "data", "spec"),
    [
        ("seraphina.json", json.dumps(card_json()).encode(), "V2"),
        ("seraphina.png", card_png({"chara": b64(card_json())}), "V2"),
        (
            "seraphina.png",
            card_png({"chara": b64(card_json(name="Old copy")), "ccv3": b64(card_json("chara_card_v3"))}),
            "V3",
        ),
    ],
)
def test_character_cards_import_as_prompt_personas(folders, monkeypatch, filename, data, spec):
    _, personas = folders
    at, _fake = manage_page(monkeypatch)
    upload(at, filename, data)
    assert not at.error, [e.value for e in at.error]
    assert f"Imported Seraphina ({spec} card) as the prompt persona seraphina" in at.success[0].value
    entry = json.loads(personas.read_text())["seraphina"]
    assert entry["display_name"] == "Seraphina" and entry["greeting"] == "*Seraphina smiles.* You're awake, User."
    assert entry["system_prompt"].startswith("Seraphina is a guardian of the forest glade.")
    assert "Scenario: User wakes up in Seraphina's cottage." in entry["system_prompt"]
    assert "User: Who are you?\nSeraphina: I am Seraphina." in entry["system_prompt"]
    assert entry["extensions"] == card_json()["data"]["extensions"]  # kept as they were
    assert "🎭 Seraphina (prompt)" in listed(at)
    upload(at, filename, data)  # again: a second persona, under a free id
    assert "seraphina-2" in json.loads(personas.read_text())


def hostile_cards() -> list:
    huge = b"{" + b" " * (6 << 20) + b"}"
    whole = card_png({"chara": b64(card_json())})
    return [
        ("huge.json", huge, "larger than 5 MB"),
        ("big.png", card_png({"chara": b64(card_json())}, size=(5000, 4000)), "5000×4000 pixels"),
        ("truncated.png", whole[: len(whole) // 2], "cut short or damaged"),
        ("garbage.png", card_png({"chara": "!!not base64!!"}), "'chara' text chunk is not base64"),
        ("chunk.png", card_png({"chara": "QUFB" * (600 << 10)}), "'chara' text chunk is larger than 2 MB"),
        ("plain.png", card_png({"Software": "paint"}), "no 'chara' or 'ccv3' text chunk"),
        ("notes.json", json.dumps({"title": "my notes", "items": [1, 2]}).encode(), "is not a character card"),
        ("list.json", b"[1, 2, 3]", "not a JSON object"),
        ("broken.json", b'{"spec": "chara_card_v2", "data": {', "not valid JSON"),
        ("long.json", json.dumps(card_json(description="x" * (1 << 20))).encode(), "data.description: String"),
        ("number.json", json.dumps(card_json(name=42)).encode(), "data.name: Input should be a valid string"),
        ("nodata.json", json.dumps({"spec": "chara_card_v2", "data": "x"}).encode(), "data is not an object"),
        ("greeting.json", json.dumps(card_json(first_mes="h" * 3000)).encode(), "data.first_mes: String"),
        ("long-prompt.json", json.dumps(card_json(description="d" * 7000, scenario="s" * 7000)).encode(), "together"),
        ("control.json", json.dumps(card_json(description="a\x07b")).encode(), "control characters"),
        ("ext.json", json.dumps(card_json(extensions={"blob": "z" * 40000})).encode(), "data.extensions"),
        ("notes.txt.json", b"hello", "neither JSON nor PNG"),
    ]


@pytest.mark.parametrize(("filename", "data", "message"), hostile_cards(), ids=[c[0] for c in hostile_cards()])
def test_hostile_cards_get_a_clear_message_and_change_nothing(folders, monkeypatch, filename, data, message):
    _, personas = folders
    before = personas.read_bytes()
    at, _fake = manage_page(monkeypatch)
    upload(at, filename, data)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert personas.read_bytes() == before
    at.run()
    assert not at.exception


def test_markup_and_bidi_in_a_cards_name_stay_text(folders, monkeypatch):
    _, personas = folders
    name = "<img src=x onerror=alert(1)> **Evil** [link](javascript:alert(1)) \u202eesrever"
    at, _fake = manage_page(monkeypatch)
    upload(at, "evil.json", json.dumps(card_json(name=name, first_mes="![x](http://evil.example/a.png)")).encode())
    assert not at.error, [e.value for e in at.error]
    stored = json.loads(personas.read_text())
    (pid,) = [k for k in stored if k.startswith("img-src")]
    assert pid.startswith("img-src-x-onerror-alert-1-evil-link") and len(pid) <= 48  # a safe id, from its letters
    assert stored[pid]["display_name"].endswith("\ufffdesrever")  # the override cannot reorder what follows
    success = at.success[0].value
    assert not re.search(r"(?<!\\)[<*\[]", success) and "\\<img" in success and "\\*\\*Evil" in success
    at.radio(key="persona.view").set_value("Chat").run()
    at.selectbox(key="persona.current").set_value(pid).run()
    assert not at.exception
    assert "\\<img" in at.title[0].value
    assert "evil.example" not in at.chat_message[0].markdown[0].value.split("`")[0]  # the image is not loaded


def test_train_your_own_shows_the_real_command_and_the_tutorials_format(folders, monkeypatch):
    import shlex

    import personas.finetune as finetune

    at, _fake = manage_page(monkeypatch)
    (expander,) = [e for e in at.expander if e.label == "Train your own"]
    command, dataset = (c.value for c in expander.code)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == [".venv/bin/python", "-m", "personas.finetune"]
    seen = {}
    monkeypatch.setattr(finetune, "_run", lambda args, config: seen.update(vars(args)) or 0)
    assert finetune.main(argv[3:]) == 0  # the real parser accepts every flag shown
    assert seen["name"] == "huanhuan" and seen["avatar"] == "🌸"
    records = json.loads(dataset)
    assert set(records[0]) == {"instruction", "input", "output"} and "甄嬛" in records[1]["output"]
    text = " ".join(m.value for m in expander.markdown)
    assert "`instruction`/`input`/`output`" in text and "`messages`" in text


@pytest.mark.model
def test_real_model_the_tutorials_checkpoint_copy_answers_in_character_once_its_persona_is_made(tmp_path, monkeypatch):
    """The shipped adapter's weights and config alone, as the tutorial copies a checkpoint: the form's persona.json
    makes the real loader attach it (shapes checked against the demo model), and it answers with its trait."""
    folder = tmp_path / "adapters" / "huanhuan"
    folder.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy(SHIPPED / name, folder / name)
    monkeypatch.setenv("ADAPTERS_DIR", str(folder.parent))
    at = AppTest.from_file("../app.py", default_timeout=300)
    at.switch_page(PAGE).run()
    at.radio(key="persona.view").set_value("Manage personas").run()
    assert not at.exception, at.exception
    prefix = "persona.create.huanhuan"
    assert "is the same" in shown(at)  # the demo model is what the adapter was trained on
    at.text_area(key=f"{prefix}.system_prompt").set_value("You are Captain Quill, a cheerful old sea captain.")
    at.button(key=f"{prefix}.submit").click().run()
    assert not at.error, [e.value for e in at.error]
    assert "🎭 huanhuan (LoRA)" in listed(at)
    at.radio(key="persona.view").set_value("Chat").run()
    at.selectbox(key="persona.current").set_value("huanhuan").run()
    at.slider(key="persona.temperature").set_value(0.0)
    at.number_input(key="persona.max_new").set_value(40)
    at.chat_input(key="persona.input").set_value("Tell me about whales.").run()
    assert not at.exception, at.exception
    assert "fair winds" in at.chat_message[-1].markdown[0].value.lower()
