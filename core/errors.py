"""The base of every error the app shows to users. Each message says what went wrong and how to fix it.

The engine's errors live with its interface (`llm/interface.py`), the store's with the store, the adapters'
with `llm/lora.py`: all are `StudioError`s, so a page or the API catches one class and shows its message.
"""


class StudioError(Exception):
    """Base class: pages catch this and show `st.error(str(exc))`; the API answers with its message."""


def validation_message(exc) -> str:
    """The first problem a pydantic `ValidationError` found, as `where: what`, never echoing the value itself
    (it may be long, or carry markup): for messages about files and requests from outside."""
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part)[:60] for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
