"""The OpenAI-compatible HTTP API, served on the page's own port by `app.py`'s `st.App`.

The HTTP layer only translates, as vLLM's routes do: `routes.py` (every /v1 path and method; /v1/models and
/v1/chat/completions) and the other routes' modules (`completions`, `embeddings`, `responses`, `conversations`,
`assistants`, `runs`) read a request and write the answer back. Below them: `errors.py` (the refusal type and
the one mapping of the app's errors to OpenAI's error shape), `access.py` (the key, and which pages' origins),
`body.py` (reading and checking a body), `schemas.py` (the bodies' shapes and bounds), `translate.py` (a
request's fields as sampling options, answers, an answer's shape, a team's limits), `chat.py` (the one answer
path: a request checked and its answers started), `stops.py` (stop strings), `streaming.py` (reading an answer
from the event loop), `catalog.py` (which model ids exist: the base model, every available persona and team)
and `loaded.py` (runtime's backend, the pages' own, with 503 until it has loaded). A team answers as a model
through `team.answer`.
"""
