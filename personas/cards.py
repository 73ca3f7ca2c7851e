"""Character cards (SillyTavern's V2 and V3, and the older V1) as prompt-only personas.

A card is JSON: `{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name", "description", "personality",
"scenario", "first_mes", "mes_example", "system_prompt", "extensions", ...}}` (V3: `chara_card_v3`, "3.0", the same
fields and more). In a PNG it is base64 JSON in a text chunk: `chara` (V2), `ccv3` (V3; preferred when both are
there). See github.com/malfoyslastname/character-card-spec-v2 and github.com/kwaroran/character-card-spec-v3.

A card comes from a stranger: the file, the image, the text chunk and every field are bounded before use, each
field must be text of its kind (a number where a name belongs is refused, naming the field), and the persona made
from it is checked by the registry's own schema. Nothing here renders anything: the page shows names with `plain`
and prompts with `safe_markdown`, so markup in a card stays text.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import N_, StudioError, Text, problems, validation_message
from core.text import surrogate_at
from personas.editing import persona_id
from personas.registry import DEFAULT_AVATAR, PersonaCard

MAX_FILE_BYTES = 5 << 20  # cards are tens of KB, their PNGs a few hundred KB to 2 MB
MAX_PIXELS = 4096 * 4096  # a portrait; the pixels are decoded to reach text chunks written after them
MAX_CHUNK_BYTES = 2 << 20  # the base64 card in a PNG text chunk
MAX_FIELD_CHARS = 8000  # as a persona's system prompt: no one field may be longer than what it goes into
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNKS = ("ccv3", "chara")  # V3 first: a V3 card's PNG carries a V2 copy for older readers
SPECS = {"chara_card_v2": "2.0", "chara_card_v3": "3.0"}
USER = "User"  # what `{{user}}` becomes: the card's text speaks of the person chatting
CHAR_MACRO = re.compile(r"\{\{char\}\}|<BOT>", re.IGNORECASE)
USER_MACRO = re.compile(r"\{\{user\}\}|<USER>", re.IGNORECASE)
EXPECTED = Text(
    N_(
        "expected a SillyTavern character card: a .json file, or a .png with a 'chara' or 'ccv3' text chunk, holding "
        "{example}"
    ),
    example='{"spec": "chara_card_v2" or "chara_card_v3", "data": {"name": …, "description": …, "first_mes": …}}',
)


class CardError(StudioError):
    """A file that cannot be imported as a character card; the message says what was expected or is too big."""


class CardData(BaseModel):
    """The fields of a card's `data` the studio uses, by type and length; other fields are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=MAX_FIELD_CHARS)
    personality: str = Field("", max_length=MAX_FIELD_CHARS)
    scenario: str = Field("", max_length=MAX_FIELD_CHARS)
    first_mes: str = Field("", max_length=MAX_FIELD_CHARS)
    mes_example: str = Field("", max_length=MAX_FIELD_CHARS)
    system_prompt: str = Field("", max_length=MAX_FIELD_CHARS)
    creator_notes: str = Field("", max_length=MAX_FIELD_CHARS)
    extensions: dict[str, Any] = {}


@dataclass(frozen=True)
class ImportedCard:
    persona_id: str  # wanted id (made free by `editing.add_imported`)
    card: PersonaCard
    spec: str  # "V1", "V2" or "V3"


def parse_card_file(filename: str, data: bytes) -> ImportedCard:
    """A card file (JSON or PNG, told apart by content) as a persona. Raises CardError saying what is wrong."""
    if len(data) > MAX_FILE_BYTES:
        raise CardError(
            N_("The file is larger than {limit} MB; a character card is far smaller."),
            limit=MAX_FILE_BYTES >> 20,
        )
    if data.startswith(PNG_SIGNATURE):
        return card_from_json(png_card_text(data), "PNG")
    if data.lstrip()[:1] in (b"{", b"["):
        return card_from_json(data, "JSON")
    raise CardError(N_("{filename!r} is neither JSON nor PNG: {expected}."), filename=filename[:80], expected=EXPECTED)


def png_card_text(data: bytes) -> bytes:
    """The card JSON from a PNG's `ccv3` or `chara` text chunk (base64), read with Pillow within the limits."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise CardError(
                        N_(
                            "The image is {width}×{height} pixels; a card's image may have at most {limit:,} "
                            "(e.g. 4096×4096). Scale it down, or import the card's JSON."
                        ),
                        width=width,
                        height=height,
                        limit=MAX_PIXELS,
                    )
                texts = dict(image.text)  # reads the whole file: SillyTavern writes its chunk after the pixels
    except CardError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise CardError(
            N_("The image has too many pixels; a card's image may have at most {limit:,}."), limit=MAX_PIXELS
        ) from None
    except ValueError as exc:
        if "decompressed data too large" not in str(exc).lower():  # Pillow bounds a zTXt/iTXt chunk
            raise _damaged(exc) from None
        from PIL import PngImagePlugin

        raise CardError(
            N_("A compressed text chunk of the PNG unpacks to more than {limit} MB; a card is smaller."),
            limit=max(PngImagePlugin.MAX_TEXT_CHUNK >> 20, 1),
        ) from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError… for a broken file
        raise _damaged(exc) from None
    for key in CHUNKS:
        if key in texts:
            return _decoded(key, texts[key])
    raise CardError(
        N_("The PNG holds no character card (no 'chara' or 'ccv3' text chunk): {expected}."), expected=EXPECTED
    )


def _damaged(exc: Exception) -> CardError:
    return CardError(
        N_("The PNG cannot be read ({kind}): it is cut short or damaged. Export the card again."),
        kind=type(exc).__name__,
    )


def _decoded(key: str, text: str) -> bytes:
    if len(text) > MAX_CHUNK_BYTES:
        raise CardError(
            N_("The PNG's '{key}' text chunk is larger than {limit} MB; a card is smaller."),
            key=key,
            limit=MAX_CHUNK_BYTES >> 20,
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CardError(
            N_("The PNG's '{key}' text chunk is not base64 (a card's JSON is stored as base64)."), key=key
        ) from None


def card_from_json(data: bytes, where: str) -> ImportedCard:
    """A card's JSON (V2, V3, or V1 with the fields at the top) as a persona. Raises CardError naming the field."""
    from pydantic_core import from_json

    try:
        raw = from_json(data)  # nesting is bounded; a lone surrogate or bad UTF-8 is refused here
    except ValueError as exc:
        raise CardError(
            N_("The {where} card is not valid JSON ({reason}): {expected}."),
            where=where,
            reason=str(exc)[:80],
            expected=EXPECTED,
        ) from None
    if not isinstance(raw, dict):
        raise CardError(N_("The {where} card is not a JSON object: {expected}."), where=where, expected=EXPECTED)
    spec = raw.get("spec")
    if spec in SPECS:
        body, version, prefix = raw.get("data"), "V" + SPECS[spec][0], "data."
    elif spec is None and isinstance(raw.get("name"), str) and ("first_mes" in raw or "description" in raw):
        body, version, prefix = raw, "V1", ""
    else:
        shown = Text(N_("spec {spec!r}"), spec=str(spec)[:40]) if spec is not None else Text(N_("no spec"))
        raise CardError(
            N_("The {where} file is not a character card ({shown}): {expected}."),
            where=where,
            shown=shown,
            expected=EXPECTED,
        )
    if not isinstance(body, dict):
        raise CardError(N_("The card's data is not an object: {expected}."), expected=EXPECTED)
    if (place := surrogate_at(body)) is not None:
        raise CardError(
            N_("The card's {prefix}{place} holds a broken character (a lone surrogate)."),
            prefix=prefix,
            place=place[:60],
        )
    try:
        fields = CardData.model_validate(body)
    except ValidationError as exc:
        raise CardError(N_("The card's {prefix}{problem}."), prefix=prefix, problem=validation_message(exc)) from None
    return ImportedCard(persona_id(fields.name), persona_card(fields), version)


def persona_card(fields: CardData) -> PersonaCard:
    """The persona a card describes: name, the card's text as the system prompt, its first message as greeting."""
    name = " ".join(fields.name.split())  # a name is one line
    text = {key: _filled(getattr(fields, key), name) for key in CardData.model_fields if key != "extensions"}
    parts = [
        text["system_prompt"].replace("{{original}}", "").strip(),
        text["description"],
        f"{name}'s personality: {text['personality']}" if text["personality"] else "",
        f"Scenario: {text['scenario']}" if text["scenario"] else "",
        f"Examples of how {name} speaks:\n{text['mes_example']}" if text["mes_example"] else "",
    ]
    fields_of = {
        "display_name": "data.name",
        "greeting": "data.first_mes",
        "system_prompt": Text(N_("data.system_prompt, description, personality, scenario and mes_example together")),
        "description": "data.creator_notes",
        "extensions": "data.extensions",
    }
    try:
        return PersonaCard.model_validate(
            {
                "display_name": name,
                "description": text["creator_notes"][:2000],
                "system_prompt": "\n\n".join(p for p in parts if p),
                "greeting": text["first_mes"],
                "avatar": DEFAULT_AVATAR,
                "extensions": fields.extensions or None,
            }
        )
    except ValidationError as exc:
        where, message = problems(exc)[0]
        field = where.split(".")[0]
        raise CardError(
            N_("The card's {field}: {message}."), field=fields_of.get(field, field), message=message
        ) from None


def _filled(text: str, name: str) -> str:
    """Card text as the model should read it: the `{{char}}` and `{{user}}` macros filled, line ends as `\\n`."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = CHAR_MACRO.sub(lambda _: name, text)
    return USER_MACRO.sub(USER, text).strip()
