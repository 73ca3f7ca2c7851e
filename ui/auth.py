"""The optional password gate (APP_PASSWORD) every page calls first."""

from __future__ import annotations

import hmac
import time

import streamlit as st

from llm.settings import get_settings


def require_password() -> None:
    """Stop the page, showing only a password box, until this browser session has the password."""
    password = get_settings().app_password
    if password is None or not password.get_secret_value() or st.session_state.get("auth.ok"):
        return
    st.title("🔒 Llama Studio")
    with st.form("auth.form"):
        given = st.text_input("Password", type="password", key="auth.password")
        submitted = st.form_submit_button("Enter")
    if submitted:
        if hmac.compare_digest(given.encode(), password.get_secret_value().encode()):
            st.session_state["auth.ok"] = True
            st.rerun()
        time.sleep(1)  # slows down guessing
        st.error("Wrong password.")
    st.stop()
