"""The persona page's "Manage personas" view: a persona for an adapter folder that lacks one, the prompt personas
(add, edit, delete), character card import, and how to train your own. Checking and writing live in `personas/`;
this only draws and passes the fields on. After a change the shared registry is refreshed, so the persona is there
for every session and the API at once."""

from __future__ import annotations

import streamlit as st

from core.errors import StudioError
from llm.interface import ChatBackend
from personas.cards import MAX_FILE_BYTES, parse_card_file
from personas.editing import (
    AdapterDraft,
    adapter_draft,
    add_imported,
    create_adapter_card,
    delete_prompt_persona,
    needs_card,
    read_entries,
    save_prompt_persona,
)
from personas.registry import DEFAULT_AVATAR, SAFE_NAME, PersonaRegistry
from personas.tutorial import example_dataset, finetune_command
from ui.i18n import _, shown
from ui.safe_text import plain, safe_markdown

FLASH = "persona.manage.flash"  # what the last change did, shown after the rerun that makes it visible
NEW = ""  # the prompt-persona picker's entry for a new one


def manage(backend: ChatBackend, reg: PersonaRegistry) -> None:
    if message := st.session_state.pop(FLASH, None):
        st.success(message)
    adapters_without_persona(backend, reg)
    prompt_personas(reg)
    import_card(reg)
    train_your_own(reg)


def _done(reg: PersonaRegistry, message: str, *forget: str) -> None:
    """After a change: refresh the shared registry, forget this view's widget state under `forget`, rerun."""
    reg.refresh()
    for key in [k for k in st.session_state if any(str(k).startswith(prefix) for prefix in forget)]:
        del st.session_state[key]
    st.session_state[FLASH] = message
    st.rerun()


def _text(entry: object, field: str, default: str = "") -> str:
    value = entry.get(field) if isinstance(entry, dict) else None
    return value if isinstance(value, str) else default


def adapters_without_persona(backend: ChatBackend, reg: PersonaRegistry) -> None:
    missing = [p for p in reg.personas() if needs_card(p)]
    if not missing:
        return
    st.subheader(_("Adapters without a persona"))
    st.caption(
        _(
            "These folders hold a fine-tuned adapter but no persona.json, as a training run's checkpoint folder is "
            "copied. Say who the persona is, and it can be chosen at once."
        )
    )
    for persona in missing:
        create_form(reg, adapter_draft(persona, backend.base_name))


def create_form(reg: PersonaRegistry, draft: AdapterDraft) -> None:
    prefix = f"persona.create.{draft.name}"
    with st.form(key=prefix):
        st.markdown(_("**Create persona** for the adapter folder {name}").format(name=plain(draft.name)))
        fields = {
            "display_name": st.text_input(_("Display name"), draft.name, key=f"{prefix}.display_name"),
            "description": st.text_input(_("Description"), key=f"{prefix}.description"),
            "system_prompt": st.text_area(
                _("System prompt"),
                key=f"{prefix}.system_prompt",
                help=_("Exactly the one it was trained with: the adapter answers in character only with it."),
            ),
            "greeting": st.text_input(_("Greeting"), key=f"{prefix}.greeting"),
            "avatar": st.text_input(_("Avatar (one emoji)"), DEFAULT_AVATAR, key=f"{prefix}.avatar"),
            "base_model": st.text_input(
                _("Base model (from adapter_config.json)"), draft.base_model or "", key=f"{prefix}.base_model"
            ),
        }
        base_model_note(draft)
        submitted = st.form_submit_button(_("Create persona"), key=f"{prefix}.submit")
    if submitted:
        try:
            create_adapter_card(draft.folder, fields)
        except StudioError as exc:
            st.error(safe_markdown(_("Not saved: {reason}").format(reason=shown(exc))))
            return
        _done(reg, _("Created the persona {name}: choose it in the sidebar.").format(name=draft.name), prefix)


def base_model_note(draft: AdapterDraft) -> None:
    if draft.base_model is None:
        st.warning(_("adapter_config.json names no base model: enter the model the adapter was trained on."))
    elif draft.loaded_model is None:
        st.caption(_("The server decides whether the adapter fits its model."))
    elif draft.differs:
        st.warning(
            _(
                "This adapter was trained on {base}, but the loaded model is {loaded}. It cannot be used with "
                "this model: it will be listed as unavailable until LLM_MODEL loads the model it was trained on."
            ).format(base=plain(draft.base_model), loaded=plain(draft.loaded_model))
        )
    else:
        st.caption(
            _("Trained on {base}: the loaded model, {loaded}, is the same.").format(
                base=plain(draft.base_model), loaded=plain(draft.loaded_model)
            )
        )


def prompt_personas(reg: PersonaRegistry) -> None:
    st.subheader(_("Prompt personas"))
    st.caption(
        _("A system prompt, a greeting and an avatar, kept in {file}: no adapter needed.").format(
            file=plain(reg.personas_file.name)
        )
    )
    try:
        entries = read_entries(reg.personas_file)
    except StudioError as exc:
        st.error(safe_markdown(_("The personas cannot be changed here: {reason}").format(reason=shown(exc))))
        return
    names = [name for name in entries if SAFE_NAME.match(name)]
    choice = st.selectbox(
        _("Persona to edit"),
        [NEW, *names],
        format_func=lambda n: _("New persona") if n == NEW else n,
        key="persona.edit.pick",
    )
    prefix = f"persona.edit.{choice or '+new'}."
    original = st.session_state.setdefault(prefix + "original", entries.get(choice))  # as first shown
    edit_form(reg, choice, original, prefix)
    if choice == NEW:
        return
    sure = st.checkbox(_("Yes, delete {name}").format(name=choice), key=prefix + "sure")  # nothing goes by a slip
    if st.button(_("Delete {name}").format(name=choice), key=prefix + "delete", disabled=not sure):
        try:
            delete_prompt_persona(reg.personas_file, choice)
        except StudioError as exc:
            st.error(safe_markdown(_("Not deleted: {reason}").format(reason=shown(exc))))
            return
        _done(reg, _("Deleted {name}.").format(name=choice), prefix, "persona.edit.pick")


def edit_form(reg: PersonaRegistry, choice: str, original: object, prefix: str) -> None:
    with st.form(key=prefix + "form"):
        name = choice
        if choice == NEW:
            name = st.text_input(_("Name (letters, digits, - and _)"), key=prefix + "name").strip()
        fields = {
            "display_name": st.text_input(_("Display name"), _text(original, "display_name"), key=prefix + "display"),
            "description": st.text_input(_("Description"), _text(original, "description"), key=prefix + "desc"),
            "system_prompt": st.text_area(_("System prompt"), _text(original, "system_prompt"), key=prefix + "sys"),
            "greeting": st.text_area(_("Greeting"), _text(original, "greeting"), key=prefix + "greeting"),
            "avatar": st.text_input(
                _("Avatar (one emoji)"), _text(original, "avatar", DEFAULT_AVATAR), key=prefix + "avatar"
            ),
        }
        submitted = st.form_submit_button(_("Save persona"), key=prefix + "save")
    if not submitted:
        return
    adapters = {p.name for p in reg.personas() if p.kind == "lora"}
    try:
        save_prompt_persona(reg.personas_file, name, fields, expected=original, new=choice == NEW, reserved=adapters)
    except StudioError as exc:
        st.error(safe_markdown(_("Not saved: {reason}").format(reason=shown(exc))))
        if choice != NEW and "meanwhile" in str(exc):
            st.session_state.pop(prefix + "original", None)  # the next run shows the entry as it is now
        return
    _done(reg, _("Saved {name}.").format(name=name), prefix)


def import_card(reg: PersonaRegistry) -> None:
    st.subheader(_("Import a character card"))
    st.caption(
        _(
            "A SillyTavern character card (V2 or V3), as its .json or the .png it is shared as, becomes a prompt "
            "persona: its name, its description, personality, scenario and example messages as the system prompt, "
            "its first message as the greeting. At most {size} MB."
        ).format(size=MAX_FILE_BYTES >> 20)
    )
    upload = st.file_uploader(_("Character card"), type=["json", "png"], key="persona.card.file")
    if not st.button(_("Import card"), key="persona.card.import", disabled=upload is None) or upload is None:
        return
    adapters = {p.name for p in reg.personas() if p.kind == "lora"}
    try:
        imported = parse_card_file(upload.name, upload.read(MAX_FILE_BYTES + 1))
        name = add_imported(reg.personas_file, imported.persona_id, imported.card, reserved=adapters)
    except StudioError as exc:
        st.error(safe_markdown(_("Not imported: {reason}").format(reason=shown(exc))))
        return
    _done(
        reg,
        _("Imported {display} ({spec} card) as the prompt persona {name}.").format(
            display=plain(imported.card.display_name), spec=imported.spec, name=name
        ),
    )


def train_your_own(reg: PersonaRegistry) -> None:
    with st.expander(_("Train your own")):
        st.markdown(
            _(
                "Fine-tune a LoRA persona on the loaded model (LLM_MODEL) from a dataset of what the persona says. "
                "The adapter and its persona.json are written to {folder}/<name>; then press **Refresh personas**."
            ).format(folder=plain(str(reg.adapters_dir)))
        )
        st.code(finetune_command(), language="bash")
        st.markdown(
            _(
                "The dataset (`--data`) is either a JSON list of `instruction`/`input`/`output` records, the "
                "tutorial's format (the question is the instruction, plus the input when there is one; the output "
                "is the persona's answer), or a .jsonl file with one `messages` list of user and assistant turns a "
                "line, ending with the assistant's. A malformed record is refused with its number. For example:"
            )
        )
        st.code(example_dataset(), language="json")
        st.caption(
            _(
                "Trained elsewhere with PEFT, as in the tutorial? Copy the checkpoint folder "
                "(adapter_model.safetensors and adapter_config.json) into {folder}, press **Refresh personas**, "
                "and create its persona above."
            ).format(folder=plain(str(reg.adapters_dir)))
        )
