"""The OpenAI-compatible HTTP API, served on the page's own port by `app.py`'s `st.App`.

`routes.py` only translates HTTP to the chat backend and back (every /v1 path and method, one error mapping);
`access.py` says who may call it (the key, and which pages' origins); `body.py` reads and checks a request
body; `schemas.py` holds the bodies' shapes and bounds; `catalog.py` says which model ids exist (the base
model and every available persona); `service.py` holds the process-wide state the routes use.
"""
