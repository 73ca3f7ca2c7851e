"""One store for the page and the API, in a real Chromium against `streamlit run app.py`: a conversation made through
the Conversations and Responses APIs appears in the chat page's sidebar and continues there, and what the page adds
is read back through the API, by the page's own `?c=` id too."""

from __future__ import annotations

import re

import openai
import pytest

from tests.browser import bubbles, open_chat, send, start_streamlit
from tests.conftest import ARTIFACTS
from tests.test_api import BASE, stop, wait_healthy

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.model]
KEY = "browser-api-key-77c1"


def test_an_api_conversation_shows_in_the_sidebar_and_the_page_continues_it(browser, tmp_path):
    proc, url = start_streamlit("app.py", tmp_path / "data", {"API_KEY": KEY})
    try:
        wait_healthy(url)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
        conversation = client.conversations.create(items=[{"role": "user", "content": "Ahoy from a script"}])
        answer = client.responses.create(
            model=BASE, input="Name a ship.", conversation=conversation.id, max_output_tokens=8
        )
        page = open_chat(browser, url, max_new=8)
        entry = page.get_by_role("button", name="Ahoy from a script")
        entry.wait_for(timeout=60_000)
        entry.click()
        page.wait_for_url(re.compile(r"[?&]c=" + re.escape(conversation.id.removeprefix("conv_"))))
        page.get_by_text("Name a ship.").wait_for(timeout=60_000)
        shown = bubbles(page)
        assert len(shown) == 3 and "Ahoy from a script" in shown[0] and "Name a ship." in shown[1]
        assert answer.output_text.split()[0] in shown[2]
        assert page.get_by_text("tokens used").count() == 1  # the API's answer shows its figures as the page's do
        send(page, "Thanks, sailor.", 2)
        page.screenshot(path=str(ARTIFACTS / "api-conversation-in-the-page.png"), full_page=True)
        items = client.conversations.items.list(conversation.id, order="asc").data
        assert [i.role for i in items] == ["user", "user", "assistant", "user", "assistant"]
        assert items[3].content[0].text == "Thanks, sailor." and items[4].content[0].text
        by_page_id = page.url.split("c=")[1].split("&")[0]  # the browser's own id continues through the API too
        more = client.responses.create(model=BASE, input="Bye.", conversation=by_page_id, max_output_tokens=4)
        assert more.conversation.id == conversation.id
        assert len(client.conversations.items.list(conversation.id).data) == 7
        page.close()
    finally:
        stop(proc)
