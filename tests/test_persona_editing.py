"""Writing personas and reading character cards, below the page: atomic writes, the lock that keeps concurrent
edits, a personas file that cannot be changed safely, cards laid out as SillyTavern writes them, bombs."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from personas import editing
from personas.cards import CardError, parse_card_file
from personas.editing import PersonaEditError
from personas.registry import MAX_PERSONAS_FILE_BYTES, load_prompt_personas


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def sillytavern_png(card: dict, key: bytes = b"chara") -> bytes:
    """A PNG with the card's tEXt chunk after the pixels, just before IEND, where SillyTavern writes it."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, "PNG")
    png = out.getvalue()
    text = chunk(b"tEXt", key + b"\0" + base64.b64encode(json.dumps(card).encode()))
    return png[:-12] + text + png[-12:]


CARD = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "甄嬛", "first_mes": "臣妾给{{User}}请安。"}}


def test_a_card_written_after_the_pixels_is_found_and_a_chinese_name_gets_an_id():
    imported = parse_card_file("zhen.png", sillytavern_png(CARD))
    assert imported.card.display_name == "甄嬛" and imported.card.greeting == "臣妾给User请安。"
    assert imported.persona_id.startswith("card-") and editing.SAFE_NAME.match(imported.persona_id)
    assert parse_card_file("again.json", json.dumps(CARD).encode()).persona_id == imported.persona_id


def test_a_v1_card_with_its_fields_at_the_top_is_read():
    imported = parse_card_file("v1.json", json.dumps({"name": "Aqua", "description": "A goddess."}).encode())
    assert (imported.spec, imported.card.system_prompt) == ("V1", "A goddess.")


def test_a_png_claiming_a_huge_size_is_refused_before_its_pixels_are_decoded():
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(CardError, match="pixels"):
        parse_card_file("bomb.png", bomb)


def test_a_bad_crc_or_a_png_with_only_a_signature_is_a_damaged_png():
    with pytest.raises(CardError, match="cut short or damaged"):
        parse_card_file("sig.png", b"\x89PNG\r\n\x1a\n")
    png = bytearray(sillytavern_png(CARD))
    png[20] ^= 0xFF  # inside IHDR: its CRC no longer matches
    with pytest.raises(CardError, match="cut short or damaged"):
        parse_card_file("crc.png", bytes(png))


def test_a_lone_surrogate_in_a_card_is_refused():
    with pytest.raises(CardError, match="not valid JSON"):
        parse_card_file("s.json", b'{"spec": "chara_card_v2", "data": {"name": "\\ud800"}}')


def fields(name: str) -> dict:
    return {"display_name": name, "system_prompt": f"You are {name}.", "avatar": "🙂"}


def test_concurrent_adds_from_many_threads_all_land(tmp_path):
    path = tmp_path / "personas.json"
    path.write_text(json.dumps({"kept": {"display_name": "Kept", "odd": True}}))
    start = threading.Barrier(8)

    def add(n: int) -> None:
        start.wait()
        for k in range(5):
            editing.save_prompt_persona(path, f"p{n}-{k}", fields(f"P{n}"), new=True)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = json.loads(path.read_text())
    assert len(stored) == 41 and stored["kept"] == {"display_name": "Kept", "odd": True}
    personas, problem = load_prompt_personas(path)
    assert problem is None and sum(p.available for p in personas) == 40  # `kept` is refused by the registry
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_edit_keeps_what_the_form_does_not_show(tmp_path):
    path = tmp_path / "personas.json"
    entry = {"display_name": "Seraphina", "extensions": {"depth_prompt": {"depth": 4}}}
    path.write_text(json.dumps({"seraphina": entry}))
    editing.save_prompt_persona(path, "seraphina", {"display_name": "Sera", "avatar": "🌿"}, expected=entry)
    stored = json.loads(path.read_text())["seraphina"]
    assert stored["display_name"] == "Sera" and stored["extensions"] == {"depth_prompt": {"depth": 4}}


def test_a_file_that_is_not_an_object_is_never_overwritten(tmp_path):
    path = tmp_path / "personas.json"
    for content in ("[1, 2]", "{broken", "x" * (2 << 20)):
        path.write_text(content)
        with pytest.raises(PersonaEditError, match="fix it by hand"):
            editing.save_prompt_persona(path, "new", fields("New"), new=True)
        assert path.read_text() == content


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "personas.json"
    path.write_text('{"a": {"display_name": "A"}}')

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(editing.os, "replace", fail)
    with pytest.raises(OSError):
        editing.save_prompt_persona(path, "b", fields("B"), new=True)
    assert path.read_text() == '{"a": {"display_name": "A"}}'
    assert [p.name for p in tmp_path.iterdir()] == ["personas.json"]  # no temporary or lock file left


@pytest.mark.parametrize(
    ("name", "message"),
    [("base", "is taken"), ("captain-quill", "is taken"), ("../x", "letters, digits"), ("", "letters, digits")],
)
def test_ids_that_would_shadow_or_escape_are_refused(tmp_path, name, message):
    with pytest.raises(PersonaEditError, match=message):
        editing.save_prompt_persona(tmp_path / "p.json", name, fields("X"), new=True, reserved={"captain-quill"})
    assert not (tmp_path / "p.json").exists()


def test_a_file_that_would_grow_past_what_the_registry_reads_is_refused(tmp_path):
    path = tmp_path / "personas.json"
    big = {}
    while len(json.dumps(big, indent=2)) < MAX_PERSONAS_FILE_BYTES - 4000:  # readable, but with no room for 8 KB
        big[f"p{len(big)}"] = {"display_name": "P", "system_prompt": "s" * 4000}
    path.write_text(json.dumps(big, indent=2))
    assert load_prompt_personas(path)[1] is None
    with pytest.raises(PersonaEditError, match="larger than 1024 KB"):
        editing.save_prompt_persona(path, "one-more", {**fields("X"), "system_prompt": "s" * 7900}, new=True)
    assert json.loads(path.read_text()) == big


def test_persona_json_is_not_written_over_one_made_meanwhile(tmp_path):
    folder = Path(tmp_path / "huanhuan")
    folder.mkdir()
    (folder / "persona.json").write_text("{}")
    with pytest.raises(PersonaEditError, match="exists already"):
        editing.create_adapter_card(folder, {**fields("H"), "base_model": "SmolLM2-135M-Instruct (demo)"})
    assert (folder / "persona.json").read_text() == "{}"


def test_concurrent_adds_from_other_processes_all_land(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = tmp_path / "personas.json"
    script = (
        "import sys; from pathlib import Path; from personas.editing import save_prompt_persona\n"
        "for k in range(10):\n"
        "    save_prompt_persona(Path(sys.argv[1]), f'p{sys.argv[2]}-{k}', {'display_name': 'P'}, new=True)\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], cwd=ROOT) for n in range(4)]
    assert [run.wait(timeout=120) for run in runs] == [0, 0, 0, 0]
    assert len(json.loads(path.read_text())) == 40
