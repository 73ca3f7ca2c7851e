"""Team: a coordinator and its experts, personas on the one shared model, work on a task together."""

import streamlit as st

from ui import page
from ui.gestures import WITHOUT_CONTINUE
from ui.i18n import _
from ui.safe_text import plain
from ui.session import ChatSession
from ui.team import limits_caption, pick_team, render_message, run_live, sidebar_limits

st.set_page_config(page_title="Llama Studio · " + _("Team"), page_icon="👥", layout="wide")
backend = page.start()
team = pick_team(backend)
limits, options = sidebar_limits()
session = ChatSession("team")


def header() -> None:
    if team is None:
        st.error(
            _("No team can run. Check the teams file (teams.json) and the personas it names; the sidebar lists why.")
        )
        return
    experts = ", ".join(f"{p.card.avatar} {p.card.display_name}" for p in team.experts)
    st.caption(
        plain(
            _("{team}: {coordinator} coordinates {experts}. ").format(
                team=team.label, coordinator=team.coordinator.card.display_name, experts=experts
            )
        )
        + limits_caption(limits)
    )


def reply(turn: page.Turn) -> None:
    run_live(session, backend, team, turn.prompt, limits, options)


page.run(
    session,
    "👥 " + _("Team of experts"),
    reply,
    _("Give the team a task, e.g. {example}").format(example=team.card.example_task)
    if team and team.card.example_task
    else _("Give the team a task"),
    header=header,
    render=render_message,
    disabled=team is None,
    allowed=WITHOUT_CONTINUE,  # a run is many turns: it is run again, not continued
)
