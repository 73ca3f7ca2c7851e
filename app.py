"""Chat: the home page. Draws only; the model lives in llm/ and is shared by every session."""

import streamlit as st

if __name__ != "__main__":
    # `streamlit run app.py` imports this file once, as the module `app`, to find the server it runs: Streamlit's
    # own routes plus the OpenAI-compatible API (server/api), with our middleware (the host guard) in front.
    # Each browser session then runs this file as __main__: the chat page below.
    import server
    from server.api.routes import api_routes, lifespan

    app = st.App(__file__, middleware=server.middleware(), routes=api_routes(), lifespan=lifespan)
else:
    from ui import conversations
    from ui.auth import require_password
    from ui.chat import (
        answer,
        backend_or_stop,
        check_prompt,
        commit_pending,
        model_picker,
        render_message,
        sidebar_options,
        user_message,
    )

    st.set_page_config(page_title="Llama Studio · Chat", page_icon="🦙", layout="centered")
    require_password()
    PAGE, HISTORY = "chat", "chat.messages"
    conversations.bind(PAGE, HISTORY)

    backend = backend_or_stop()
    system_prompt, options = sidebar_options("chat")
    with st.sidebar:
        model = model_picker(backend, "chat")
    slot = conversations.sidebar_slot()
    commit_pending(HISTORY)
    history = st.session_state[HISTORY]
    can_regenerate = bool(history) and history[-1]["role"] == "assistant"
    regenerate = st.sidebar.button(
        "Regenerate last answer", key="chat.regen", disabled=not can_regenerate, use_container_width=True
    )

    st.title("🦙 Chat")
    for note in backend.notes:
        st.info(note)

    # Regenerate: the last answer is drawn apart, below, and stays (on screen and in the history) until its
    # replacement has text. A click and a chat message never arrive in the same run.
    old = history[-1] if regenerate and can_regenerate else None
    if old:
        history = history[:-1]

    for message in history:
        render_message(message)
    if old:
        with (old_slot := st.empty()).container():
            render_message(old)

    prompt = check_prompt(st.chat_input("Message the model", key="chat.input", submit_mode="stop"))
    if prompt is not None:
        history.append(user_message(prompt))
        render_message(history[-1])
    if prompt is not None or old:
        conversations.save(PAGE, HISTORY)
        answer(
            backend,
            HISTORY,
            system_prompt,
            options,
            model,
            {"replaces": old.get("id")} if old else None,
            conversations.saver(PAGE, HISTORY),
        )
        if old and st.session_state[HISTORY][-1] is not old:
            old_slot.empty()  # the new answer took its place
    conversations.finish(slot, PAGE, HISTORY, "chat")
