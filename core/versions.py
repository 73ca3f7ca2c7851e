"""A conversation as a tree of versions: edits and regenerations branch it, and nothing is thrown away.

Every message names the message it follows (`parent`, None for the first). An edited question and a
regenerated answer are new messages with the same parent as the one they stand in for: siblings, the
versions shown as ‹ 2/3 ›. A conversation's *branch* is the path from its first message to the newest
one, the history the model reads; every other message is kept beside it (`others`), in the session and
in the store (core/store.py keeps them as hidden=2 rows), and exports carry them.

A message saved before versions existed has no `parent`: on the branch, it follows the message before
it. Parents come from files and databases too, so every walk here is bounded and ignores loops and
parents that are not there.
"""

from __future__ import annotations

from collections import defaultdict


def parent_of(branch: list[dict], at: int) -> str | None:
    """The id the message at `at` of `branch` follows (its own `parent`, else the one before it)."""
    message = branch[at]
    if "parent" in message:
        return message["parent"]
    return branch[at - 1].get("id") if at > 0 else None


def children(branch: list[dict], others: list[dict]) -> dict[str | None, list[dict]]:
    """parent id -> the messages that follow it, oldest first (the order versions are numbered in)."""
    found: dict[str | None, list[dict]] = defaultdict(list)
    for at in range(len(branch)):
        found[parent_of(branch, at)].append(branch[at])
    for message in others:
        found[message.get("parent")].append(message)
    for versions in found.values():
        versions.sort(key=lambda m: m.get("time") or 0)
    return found


def versions(branch: list[dict], others: list[dict], at: int, kids=None) -> list[dict]:
    """The versions of the branch's message at `at` (itself among them), oldest first."""
    kids = kids if kids is not None else children(branch, others)
    role = branch[at]["role"]
    return [m for m in kids.get(parent_of(branch, at), []) if m["role"] == role]


def newest_line(start: dict, kids: dict, limit: int) -> list[dict]:
    """`start` and, after it, the newest version at each step below it (at most `limit` messages)."""
    line, seen = [start], {start.get("id")}
    while len(line) < limit and (following := [m for m in kids.get(line[-1].get("id"), []) if m.get("id") not in seen]):
        line.append(following[-1])
        seen.add(following[-1].get("id"))
    return line


def switch(branch: list[dict], others: list[dict], at: int, chosen: dict) -> tuple[list[dict], list[dict]]:
    """(branch, others) once `chosen`, a version of the message at `at`, is shown in its place: the branch
    keeps what comes before `at`, then goes on through `chosen` along the newest versions below it."""
    kids = children(branch, others)
    line = newest_line(chosen, kids, len(branch) + len(others))
    return regroup(branch, others, branch[:at] + line)


def cut_at(branch: list[dict], others: list[dict], at: int) -> tuple[list[dict], list[dict]]:
    """(branch, others) with the branch ending before `at`: the rest is kept beside it."""
    return regroup(branch, others, branch[:at])


def regroup(branch: list[dict], others: list[dict], chosen: list[dict]) -> tuple[list[dict], list[dict]]:
    """`chosen` as the branch; every other message of the tree (no message twice) beside it."""
    on = {id(m) for m in chosen}
    kept, seen = [], set()
    for m in [*branch, *others]:
        if id(m) not in on and id(m) not in seen:
            seen.add(id(m))
            kept.append(_with_parent(branch, m))
    return chosen, kept


def _with_parent(branch: list[dict], message: dict) -> dict:
    """A message moving off the branch keeps what it followed (it is no longer in order)."""
    if "parent" not in message:
        for at, m in enumerate(branch):
            if m is message:
                message["parent"] = parent_of(branch, at)
                break
    return message


def resume(branch: list[dict], others: list[dict]) -> tuple[list[dict], list[dict]] | None:
    """A branch that ends in a question with an answer kept beside it (a regenerate stopped before any text
    came) goes on through the newest such answer; None when there is nothing to follow."""
    if not branch or branch[-1]["role"] != "user":
        return None
    kids = children(branch, others)
    answers = [m for m in kids.get(branch[-1].get("id"), []) if m["role"] == "assistant"]
    if not answers:
        return None
    return regroup(branch, others, branch + newest_line(answers[-1], kids, len(branch) + len(others)))
