"""Keyboard gestures every chat app has: Esc stops the answer being written, and the message box has the focus
when a page opens, so typing starts a message. A zero-height component runs the script in the page's frame."""

from __future__ import annotations

import streamlit.components.v1 as components

# The Esc listener is added once per browser tab (the flag lives on the page's window); the focus is tried on
# each draw, a few times while the message box appears, and only when nothing else has the focus.
SCRIPT = """<script>
const page = window.parent, doc = page.document;
if (!page.__studioKeys) {
  page.__studioKeys = true;
  // Added in the page's own frame: this frame is replaced when the page redraws, and its functions with it.
  const listener = doc.createElement("script");
  listener.textContent = `document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const stop = document.querySelector('[data-testid="stChatInputStopButton"]');
    if (stop) { event.preventDefault(); stop.click(); }
  }, true);`;
  doc.head.appendChild(listener);
}
let tries = 0;
const focus = () => {
  const box = doc.querySelector('[data-testid="stChatInputTextArea"]');
  const idle = !doc.activeElement || doc.activeElement === doc.body;
  if (box && !box.disabled && idle) box.focus();
  else if (!box && tries++ < 20) setTimeout(focus, 100);
};
focus();
</script>"""


def keyboard() -> None:
    components.html(SCRIPT, height=0)
