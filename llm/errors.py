"""The few errors the app shows to users. Each message says what went wrong and how to fix it."""


class StudioError(Exception):
    """Base class: pages catch this and show `st.error(str(exc))`."""


class ModelLoadError(StudioError):
    """The model could not be fetched or loaded."""


class PromptTooLongError(StudioError):
    """A message does not fit in the model's context window."""


class BackendError(StudioError):
    """The generation backend (in-process or a server) failed while answering."""
