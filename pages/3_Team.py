"""Team: a coordinator and its experts, personas on the one shared model, work on a task together."""

import streamlit as st

from ui.safe_text import plain
from ui.session import ChatSession, Turn, start
from ui.team import limits_caption, pick_team, render_message, run_live, sidebar_limits

st.set_page_config(page_title="Llama Studio · Team", page_icon="👥", layout="wide")
backend = start()
team = pick_team(backend)
limits, options = sidebar_limits()
session = ChatSession("team")


def header() -> None:
    if team is None:
        st.error("No team can run. Check TEAMS_FILE (teams.json) and the personas it names; the sidebar lists why.")
        return
    experts = ", ".join(f"{p.card.avatar} {p.card.display_name}" for p in team.experts)
    st.caption(
        plain(f"{team.label}: {team.coordinator.card.display_name} coordinates {experts}. ") + limits_caption(limits)
    )


def reply(turn: Turn) -> None:
    run_live(session, backend, team, turn.prompt, limits, options)


session.run(
    "👥 Team of experts",
    reply,
    f"Give the team a task, e.g. {team.card.example_task}"
    if team and team.card.example_task
    else "Give the team a task",
    header=header,
    render=render_message,
    disabled=team is None,
)
