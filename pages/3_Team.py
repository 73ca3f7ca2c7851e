"""Team: a coordinator and its experts, personas on the one shared model, work on a task together."""

import streamlit as st

from ui import conversations
from ui.auth import require_password
from ui.chat import backend_or_stop, check_prompt, commit_pending, user_message
from ui.safe_text import plain
from ui.team import limits_caption, pick_team, render_message, run_live, sidebar_limits

st.set_page_config(page_title="Llama Studio · Team", page_icon="👥", layout="wide")
require_password()
PAGE, HISTORY = "team", "team.messages"
conversations.bind(PAGE, HISTORY)

backend = backend_or_stop()
team = pick_team(backend)
limits, options = sidebar_limits()
slot = conversations.sidebar_slot()
commit_pending(HISTORY)
history = st.session_state[HISTORY]

st.title("👥 Team of experts")
if team is None:
    st.error("No team can run. Check TEAMS_FILE (teams.json) and the personas it names; the sidebar lists why.")
else:
    experts = ", ".join(f"{p.card.avatar} {p.card.display_name}" for p in team.experts)
    st.caption(
        plain(f"{team.label}: {team.coordinator.card.display_name} coordinates {experts}. ") + limits_caption(limits)
    )

for message in history:
    render_message(message)

hint = (
    f"Give the team a task, e.g. {team.card.example_task}"
    if team and team.card.example_task
    else "Give the team a task"
)
task = check_prompt(st.chat_input(hint, key="team.input", submit_mode="stop", disabled=team is None))
if task is not None and team is not None:
    history.append(user_message(task))
    render_message(history[-1])
    conversations.save(PAGE, HISTORY)
    run_live(backend, team, task, limits, options, history, f"{HISTORY}.pending", conversations.saver(PAGE, HISTORY))
conversations.finish(slot, PAGE, HISTORY, "team")
