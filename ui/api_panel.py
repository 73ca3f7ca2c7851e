"""Drawing helpers for the API page: where the OpenAI-compatible API answers, which model ids it serves, whether
it needs a key (never the key itself), and snippets to copy."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import streamlit as st

from core.settings import get_settings
from server.api.catalog import served_targets
from server.api.embeddings import embedding_id
from ui.i18n import N_, _

KINDS = {
    "base": N_("the loaded model"),
    "served": N_("a model of the server the studio forwards to"),
    "prompt": N_("a persona (its system prompt)"),
    "lora": N_("a persona with a LoRA adapter"),
    "team": N_("a team: the answer is the coordinator's synthesis"),
}


def base_url() -> str:
    """The API's address as this browser reaches the page: through an SSH tunnel, the tunnel's end."""
    parts = urlsplit(st.context.url or "http://127.0.0.1:6006/")
    return f"{parts.scheme}://{parts.netloc}/v1"


ACCESS = {
    "key": N_(
        "A key is needed: send `Authorization: Bearer <the API key>`. Whoever runs the studio chose it (the setting "
        "API_KEY); it is not shown here."
    ),
    "off": N_(
        "The API is off: the pages have a password but the API has no key. Whoever runs the studio turns it on by "
        "setting API_KEY."
    ),
    "open": N_(
        "No key is needed: anyone who can reach this address can use the API (any text works as the key). Set "
        "API_KEY to require one."
    ),
}


def access() -> str:
    """Whether the API needs a key ("key"), is off ("off": a page password and no key), or is open ("open")."""
    settings = get_settings()
    if settings.api_key is not None and settings.api_key.get_secret_value():
        return "key"
    if settings.app_password is not None and settings.app_password.get_secret_value():
        return "off"
    return "open"


def models_table(backend) -> list[dict]:
    rows = [{_("model id"): t.id, _("what it is"): _(KINDS[t.kind])} for t in served_targets(backend).values()]
    rows.append({_("model id"): embedding_id(), _("what it is"): _("vectors for /v1/embeddings")})
    return rows


def snippets(url: str, model: str, needs_key: bool) -> tuple[str, str]:
    """(curl, Python with the `openai` client) for one chat completion."""
    key = "$API_KEY" if needs_key else "none"
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}]}, ensure_ascii=False)
    curl = (
        f"curl {url}/chat/completions \\\n  -H 'Content-Type: application/json' \\\n"
        f"  -H \"Authorization: Bearer {key}\" \\\n  -d '{body}'"
    )
    key_code = 'os.environ["API_KEY"]' if needs_key else '"none"'
    python = (
        ("import os\n" if needs_key else "")
        + "from openai import OpenAI\n\n"
        + f'client = OpenAI(base_url="{url}", api_key={key_code})\n'
        + 'messages = [{"role": "user", "content": "Hello!"}]\n'
        + f'answer = client.chat.completions.create(model="{model}", messages=messages)\n'
        + "print(answer.choices[0].message.content)"
    )
    return curl, python
