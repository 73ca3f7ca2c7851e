"""Kept only for `ui/api_panel.py`, which imports `served_targets` from here; it lives in `server.api.catalog`.
What this module held has its own homes: errors in `errors`, the backend in `loaded`, the answer path in `chat`,
a request's translation in `translate`, stop strings in `stops`, a team as a model in `team.answer`."""

from server.api.catalog import served_targets

__all__ = ["served_targets"]
