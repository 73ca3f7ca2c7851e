"""Which entries of the adapters folder can be adapters: a link loop, a file, a zip or files a folder or two
down are told apart from an adapter's folder, each with what to do about it (`PersonaRegistry` lists them)."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from core.errors import N_, Text
from core.names import escaped

NOT_ADAPTERS = ("__MACOSX",)  # what a zip made on a Mac adds beside its files


def entry_problem(entry: Path, root: Path) -> str | None:
    """Why something in the adapters folder `root` that is not a folder of its own cannot be an adapter (a link
    loop, a link to `root` or above it, a file), or None for a folder."""
    try:
        is_folder = stat.S_ISDIR(entry.stat().st_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Text(N_("is a link that leads back to itself (a loop): delete it"))
        return (
            Text(N_("is a link to something that is not there"))
            if entry.is_symlink()
            else Text(N_("went away while it was read"))
        )
    if not is_folder:
        if entry.name.lower().endswith(".zip"):
            return Text(N_("is a zip file: extract it so that its files are in {name}/"), name=escaped(entry.name[:-4]))
        return Text(
            N_("is a file, not a folder: an adapter is a folder holding adapter_model.safetensors and persona.json")
        )
    if entry.is_symlink():
        target, above = entry.resolve(), root.resolve()
        if target == above or target in above.parents:
            return Text(N_("is a link to the adapters folder or a folder above it, not to an adapter: delete it"))
    return None


def folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot hold an adapter as it stands (it cannot be read, or its files are a folder or two
    down, as extracting a zip or copying a training run's output leaves them), or None."""
    from llm.lora import CONFIG, WEIGHTS

    try:
        names = set(os.listdir(folder))
    except OSError as exc:
        return Text(N_("the folder cannot be read ({kind}): check its permissions"), kind=type(exc).__name__)
    if names & {WEIGHTS, CONFIG, "persona.json"}:
        return None
    nested, into = nested_adapters(folder, {WEIGHTS, CONFIG}), escaped(folder.name)
    if len(nested) == 1:
        return Text(
            N_("the adapter files are in the subfolder {nested}: move them up into {into}/"),
            nested=nested[0],
            into=into,
        )
    if nested:
        shown = ", ".join(nested[:4]) + (", …" if len(nested) > 4 else "")
        return Text(
            N_(
                "the adapter files are in the subfolders {shown}: move the one you want (e.g. the last) up into {into}/"
            ),
            shown=shown,
            into=into,
        )
    return None


def nested_adapters(folder: Path, wanted: set[str], depth: int = 2, width: int = 100) -> list[str]:
    """The shallowest subfolders of `folder` (at most `depth` down, `width` a level; links and `__MACOSX` are
    not followed) that hold a file named in `wanted`, as escaped relative paths in natural order."""
    level: list[Path] = [Path()]
    for _ in range(depth):
        below = []
        for rel in level:
            try:
                with os.scandir(folder / rel) as entries:
                    for entry in entries:
                        hidden = entry.name.startswith(".") or entry.name in NOT_ADAPTERS
                        if not hidden and entry.is_dir(follow_symlinks=False) and len(below) < width:
                            below.append(rel / entry.name)
            except OSError:  # an unreadable subfolder holds nothing we can point at
                continue
        found = [escaped(rel.as_posix(), 200) for rel in below if _holds(folder / rel, wanted)]
        if found:
            return sorted(found, key=lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)])
        level = below
    return []


def _holds(folder: Path, wanted: set[str]) -> bool:
    try:
        return bool(wanted & set(os.listdir(folder)))
    except OSError:
        return False


def listed(entry: Path) -> bool:
    """Whether an entry of the adapters folder is listed: folders and links, and files that look like a persona
    folder or an archive of one; not hidden entries, `__MACOSX` or files such as a README.md."""
    name = entry.name
    if name.startswith(".") or name in NOT_ADAPTERS:
        return False
    return entry.is_symlink() or entry.is_dir() or "." not in name or name.lower().endswith(".zip")
