"""The OpenAI-compatible HTTP API, served on the page's own port by `app.py`'s `st.App`.

`routes.py` only translates HTTP to the chat backend and back; `catalog.py` says which model ids exist
(the base model and every available persona); `service.py` holds the process-wide state the routes use.
"""
