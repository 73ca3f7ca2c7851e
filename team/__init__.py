"""Teams of experts: a coordinator persona plans, expert personas answer together in one batch, the
coordinator writes the answer. `teams` (definitions), `record` (what a run holds), `plan` (the JSON plan),
`prompts`, the steps `coordinate` (plan, follow up), `consult` and `synthesis`, and `run` (the whole run)."""
