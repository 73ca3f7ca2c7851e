"""What the persona page shows under "Train your own": the fine-tuning command with its real flags
(`personas.finetune`), and a record in the tutorial's `instruction`/`input`/`output` format."""

from __future__ import annotations

import json
import shlex

# A record in the format of the huanhuan tutorial (written for this page): the persona's words are the output.
EXAMPLE_RECORDS = [
    {
        "instruction": "小姐，别的秀女都在求中选，唯有咱们小姐想被撂牌子，菩萨一定记得真真儿的——",
        "input": "",
        "output": "嘘——都说许愿说破是不灵的。",
    },
    {
        "instruction": "你是谁？",
        "input": "",
        "output": "家父是大理寺少卿甄远道。臣妾甄嬛，给皇上请安。",
    },
]
EXAMPLE_SYSTEM_PROMPT = "现在你要扮演皇帝身边的女人--甄嬛"


def finetune_command(
    name: str = "huanhuan",
    data: str = "datasets/huanhuan.json",
    display_name: str = "甄嬛",
    system_prompt: str = EXAMPLE_SYSTEM_PROMPT,
    greeting: str = "臣妾甄嬛，给皇上请安。",
    avatar: str = "🌸",
) -> str:
    """The `python -m personas.finetune` command line for these values, each quoted for a POSIX shell."""
    flags = {
        "--data": data,
        "--name": name,
        "--display-name": display_name,
        "--system-prompt": system_prompt,
        "--greeting": greeting,
        "--avatar": avatar,
    }
    parts = [".venv/bin/python -m personas.finetune"]
    parts += [f"{flag} {shlex.quote(value)}" for flag, value in flags.items() if value]
    return " \\\n  ".join(parts)


def example_dataset() -> str:
    """The example records as the JSON file `--data` reads."""
    return json.dumps(EXAMPLE_RECORDS, ensure_ascii=False, indent=2)
