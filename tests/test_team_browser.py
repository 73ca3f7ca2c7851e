"""The team page in a real Chromium against `streamlit run`: a run of the default team, then a reload."""

from __future__ import annotations

import re

import pytest

from tests.browser import start_streamlit
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
TASK = "Draft AI rules for a city library."
EXPERTS = ("Computer scientist", "Legal expert")


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_role("spinbutton", name=label)
    box.fill(str(value))
    box.press("Enter")


def panel_names(page) -> list[str]:
    """The expert panels' headings ("<avatar> <name>" in bold), in order."""
    bold = page.locator('[data-testid="stChatMessage"] strong').all_inner_texts()
    return [t.strip() for t in bold if t.strip().split(" ", 1)[-1] in EXPERTS]


def test_the_default_team_runs_in_the_browser_and_the_saved_run_comes_back(browser, tmp_path):  # noqa: F811
    proc, url = start_streamlit("app.py", tmp_path / "data")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
        page.goto(f"{url}/Team")
        page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=120_000)
        set_number(page, "New tokens per expert", 16)
        set_number(page, "New tokens for the answer", 16)
        set_number(page, "Follow-up rounds", 0)
        page.get_by_text("0 follow-up rounds · 16 tokens per expert").wait_for()  # the limits are on the page
        box = page.locator('[data-testid="stChatInputTextArea"]')
        box.fill(TASK)
        box.press("Enter")
        page.get_by_text("budget tokens used").wait_for(timeout=300_000)  # the figures come last
        plan = page.get_by_text(re.compile(r"^Plan \(step 1 of at most \d+\): asking ")).inner_text()
        planned = plan.split(": asking ", 1)[1].split(", ")
        names = panel_names(page)
        assert [n.split(" ", 1)[1] for n in names] == planned  # a panel for every planned expert
        assert page.get_by_text("Asked: ").count() == len(planned)
        assert page.get_by_text(re.compile(r"\d+ tokens · [\d.]+ s")).count() == len(planned)
        assert page.get_by_text("AI standards board · answer").is_visible()
        page.wait_for_url(re.compile(r"[?&]c=[\w-]{20,}"))
        page.screenshot(path=str(ARTIFACTS / "team-run.png"), full_page=True)

        page.reload()
        page.get_by_text("budget tokens used").wait_for(timeout=60_000)
        assert page.get_by_text(TASK).count() >= 1
        assert panel_names(page) == names
        assert page.get_by_text("AI standards board · answer").is_visible()
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_stop_keeps_what_the_experts_streamed(browser, tmp_path):  # noqa: F811
    proc, url = start_streamlit("app.py", tmp_path / "data")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"{url}/Team")
        page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=120_000)
        set_number(page, "New tokens per expert", 400)
        set_number(page, "Follow-up rounds", 0)
        # A number box still focused commits again on blur, and a task sent in that rerun's shadow does not turn
        # the send button into stop (Streamlit's front end): leave the box and let its rerun end first.
        page.get_by_text("0 follow-up rounds · 400 tokens per expert").wait_for()
        page.get_by_role("heading", name="Team of experts").click()
        page.wait_for_timeout(1000)
        box = page.locator('[data-testid="stChatInputTextArea"]')
        box.fill(TASK)
        box.press("Enter")
        page.get_by_text(re.compile(r"answering… · [1-9]\d* tokens")).first.wait_for(timeout=300_000)
        page.wait_for_timeout(2000)  # saved at least once (every second) while streaming
        page.locator(
            '[data-testid="stChatInputStopButton"]'
        ).click()  # the send button is a stop button while the run goes
        page.wait_for_url(re.compile(r"[?&]c=[\w-]{20,}"))
        page.reload()
        page.get_by_text("Stopped: the run was stopped").wait_for(timeout=60_000)
        assert panel_names(page)  # the panels came back, with what had streamed
        streamed = page.get_by_text(re.compile(r"^stopped · [1-9]\d* tokens")).count()
        assert streamed >= 1
        assert page.get_by_text("AI standards board · answer").count() == 0  # a stopped run writes no synthesis
        page.screenshot(path=str(ARTIFACTS / "team-stopped.png"), full_page=True)
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
