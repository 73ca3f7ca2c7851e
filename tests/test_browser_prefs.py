"""Settings and the last persona kept per browser, in Chromium against `streamlit run app.py`: a slider, a number
box, the system prompt and the persona changed, the page reloaded (a new Streamlit session): all are back; another
browser (a new context: another user) starts from the defaults; a forged cookie leaves the defaults and the page
working."""

from __future__ import annotations

import re

import pytest

from tests.browser import start_streamlit, stop
from tests.conftest import ARTIFACTS
from ui import prefs

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
BOX = '[data-testid="stChatInputTextArea"]'


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, url = start_streamlit("app.py", tmp_path_factory.mktemp("data"))
    yield url
    stop(proc)


def temperature(page):
    return page.locator('[data-testid="stSlider"]').filter(has_text="Temperature").get_by_role("slider")


def opened(context, url: str, path: str = ""):
    page = context.new_page()
    page.goto(f"{url}/{path}")
    page.locator(BOX).wait_for(timeout=180_000)
    page.get_by_text("Sampling").click()
    temperature(page).wait_for()
    return page


def wait_cookie(context, name: str, has: bool = True, holding: dict | None = None) -> None:
    """Until the page's script has written (or deleted) the cookie `name`; with `holding`, until the written
    cookie holds those values (each change is written by the run it starts, and runs end in their own time)."""
    for _ in range(200):
        found = [c["value"] for c in context.cookies() if c["name"] == name]
        if bool(found) == has and (not holding or (found and holding.items() <= prefs.decode(found[0]).items())):
            return
        context.pages[0].wait_for_timeout(100)
    raise AssertionError(f"the cookie {name} was never {'written' if has else 'deleted'} {holding or ''}")


def test_settings_and_the_persona_come_back_after_a_reload_and_only_in_that_browser(browser, url):
    mine = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = opened(mine, url)
    temperature(page).press("Home")  # 0.0
    for _ in range(3):
        temperature(page).press("ArrowRight")  # 0.15
    box = page.get_by_label("Max new tokens", exact=True)
    box.fill("200")
    box.press("Enter")
    system = page.get_by_label("System prompt", exact=True)
    system.fill("Answer like a pirate.")
    system.press("Control+Enter")
    wait_cookie(mine, "studio_chat_system", holding={"system": "Answer like a pirate."})
    wait_cookie(mine, "studio_chat", holding={"max_new_tokens": 200})
    page.get_by_test_id("stSidebarNavLink").filter(has_text="Personas").click()
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Persona").click()
    page.get_by_role("option", name=re.compile("Patient tutor")).click()
    page.get_by_role("heading", name=re.compile("Patient tutor")).wait_for()
    wait_cookie(mine, "studio_persona_choice")

    page.reload()  # a new session: the persona page opens with the tutor again
    page.get_by_role("heading", name=re.compile("Patient tutor")).wait_for(timeout=60_000)
    page.goto(url)  # and the chat page with its settings
    page.locator(BOX).wait_for(timeout=60_000)
    page.get_by_text("Sampling").click()
    assert temperature(page).input_value() == "0.15"
    assert page.get_by_label("Max new tokens", exact=True).input_value() == "200"
    assert page.get_by_label("System prompt", exact=True).input_value() == "Answer like a pirate."
    page.screenshot(path=str(ARTIFACTS / "prefs-after-reload.png"), full_page=True)

    other = browser.new_context(viewport={"width": 1280, "height": 1000})  # another user, same server
    theirs = opened(other, url)
    assert temperature(theirs).input_value() == "0.7"
    assert theirs.get_by_label("Max new tokens", exact=True).input_value() == "512"
    assert theirs.get_by_label("System prompt", exact=True).input_value().startswith("You are a helpful")
    theirs.goto(f"{url}/Personas")
    theirs.get_by_role("heading", name=re.compile("Base model")).wait_for(timeout=60_000)
    assert not [c for c in other.cookies() if c["name"].startswith("studio_")]  # defaults: nothing kept
    mine.close(), other.close()


def test_a_forged_cookie_leaves_the_defaults_and_the_page_working(browser, url):
    context = browser.new_context()
    host = re.sub(r"^https?://|:\d+$", "", url)
    forged = ["eyJ0ZW1wZXJhdHVyZSI6OTl9", "%%%", "W" * 3900, "e30=", "WzFd"]  # {"temperature":99}, junk, too long
    context.add_cookies(
        [{"name": f"studio_{part}", "value": value, "domain": host, "path": "/"}
         for part, value in zip(("chat", "chat_system", "persona", "persona_choice", "team"), forged)]
    )  # fmt: skip
    page = opened(context, url)
    assert temperature(page).input_value() == "0.7"
    assert not page.get_by_test_id("stException").count()
    temperature(page).press("End")  # the page's own write replaces the forged value
    page.wait_for_function("document.cookie.includes('studio_chat=eyJ0ZW1wZXJhdHVyZSI6Mi4wfQ')")
    context.close()
