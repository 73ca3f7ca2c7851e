"""The few errors the app shows to users. Each message says what went wrong and how to fix it."""


class StudioError(Exception):
    """Base class: pages catch this and show `st.error(str(exc))`."""


class ModelLoadError(StudioError):
    """The model could not be fetched or loaded."""


class PromptTooLongError(StudioError):
    """A message does not fit in the model's context window."""


class BackendError(StudioError):
    """The generation backend (in-process or a server) failed while answering."""


def validation_message(exc) -> str:
    """The first problem a pydantic `ValidationError` found, as `where: what`, never echoing the value itself
    (it may be long, or carry markup): for messages about files and requests from outside."""
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part)[:60] for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
