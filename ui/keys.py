"""Gestures every chat app has: Esc stops the answer being written; the message box has the focus when a page
opens, so typing starts a message; and on a phone, choosing a page closes the sidebar that covers it. A
zero-height component runs the script in the page's frame, once per page shown."""

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
// A phone: the open sidebar covers the page, so a page change (not a rerun of the same page) closes it.
const narrow = page.matchMedia("(max-width: 640px)").matches;
if (narrow && page.__studioPath !== undefined && page.__studioPath !== page.location.pathname) {
  const close = doc.querySelector('[data-testid="stSidebarCollapseButton"] button');
  if (close && close.getAttribute("aria-expanded") === "true") close.click();
}
page.__studioPath = page.location.pathname;
let tries = 0;
const focus = () => {
  const box = doc.querySelector('[data-testid="stChatInputTextArea"]');
  const idle = !doc.activeElement || doc.activeElement === doc.body;
  if (box && !box.disabled && idle) box.focus();
  else if (!box && tries++ < 600) setTimeout(focus, 100);  // the box comes once the model is ready
};
focus();
</script>"""


def gestures(page: str) -> None:
    """The script, for the page `page` (named in it, so it runs again when the page changes, not on each rerun)."""
    components.html(f"<!-- {page} -->{SCRIPT}", height=0)
