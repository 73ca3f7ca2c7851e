"""Teams of experts: a coordinator persona plans, expert personas answer together in one batch, the
coordinator writes the answer. `teams` (definitions), `plan` (the JSON plan), `prompts`, `run` (the steps)."""
