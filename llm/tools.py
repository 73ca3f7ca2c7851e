"""Tool calls in Llama-3.1's JSON format: rendering tools and past calls into a prompt, reading calls back out of
an answer, the JSON schema that makes a forced call valid by construction, and the bounds on any JSON schema a
request brings (for tools or for a JSON answer).

A model whose chat template takes `tools=` (Llama-3.1's) gets them from its own template. A template without
tool support (the demo SmolLM2's) gets the same instructions Llama-3.1 uses, here, in its system prompt, with
past calls and their results written as text turns. Answers are read as vLLM's `llama3_json` parser reads them.
"""

from __future__ import annotations

import json
from typing import Any

# What a JSON schema from a request may hold: enough for any real tool or answer shape, small enough that
# checking and compiling it (lm-format-enforcer walks it per character) stays cheap.
MAX_SCHEMA_CHARS = 16_000
MAX_SCHEMA_DEPTH = 32
MAX_ENUM = 256
PYTHON_TAG = "<|python_tag|>"

TOOL_INSTRUCTIONS = (
    "You have access to the following functions. To call a function, please respond with JSON for a function "
    'call. Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
    'value}. Do not use variables. Several calls are separated by ";". When you receive a tool result, use it '
    "to answer the original question.\n\n"
)


class SchemaError(ValueError):
    """A JSON schema that cannot be used to constrain an answer; the message says what is wrong."""


def template_has_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders `tools` itself (Llama-3.1's does, SmolLM2's does not)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # named templates: the default one decides
        template = template.get("default") or template.get("tool_use") or ""
    return "tools" in template


def uses_tools(messages: list[dict], tools: list[dict] | None) -> bool:
    return bool(tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in messages)


def for_template(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """Messages in the shape HF chat templates take: one call per assistant message (Llama-3.1's template
    refuses more), arguments as a dict (its template writes them with `tojson`)."""
    out = []
    for message in messages:
        calls = message.get("tool_calls") or []
        if not calls:
            out.append(message)
            continue
        for call in calls:
            function = call["function"]
            out.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": call.get("id"),
                            "type": "function",
                            "function": {"name": function["name"], "arguments": _arguments(function["arguments"])},
                        }
                    ],
                }
            )
    return out


def as_text(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """For a template without tool support: the tool instructions and definitions appended to the system
    prompt, each past call as the assistant's JSON text, and each run of tool results as one user turn."""
    names = {call.get("id"): call["function"]["name"] for m in messages for call in m.get("tool_calls") or []}
    out: list[dict] = []
    for message in messages:
        if message["role"] == "tool":
            result = f"Result of {names.get(message.get('tool_call_id'), 'the tool')}: {message['content']}"
            if out and out[-1].get("tool_results"):
                out[-1] = {**out[-1], "content": out[-1]["content"] + "\n\n" + result}
            else:
                out.append({"role": "user", "content": result, "tool_results": True})
        elif message.get("tool_calls"):
            calls = "; ".join(
                call_text(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]
            )
            out.append({"role": "assistant", "content": "\n".join(filter(None, [message["content"], calls]))})
        else:
            out.append({"role": message["role"], "content": message["content"]})
    out = [{"role": m["role"], "content": m["content"]} for m in out]
    if tools:
        definitions = "\n\n".join(json.dumps(tool, indent=2, ensure_ascii=False) for tool in tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{TOOL_INSTRUCTIONS}{definitions}"}
        else:
            out.insert(0, {"role": "system", "content": TOOL_INSTRUCTIONS + definitions})
    return out


def call_text(name: str, arguments: str | dict) -> str:
    """One call as the model writes it."""
    return json.dumps({"name": name, "parameters": _arguments(arguments)}, ensure_ascii=False)


def _arguments(arguments: str | dict) -> Any:
    if not isinstance(arguments, str):
        return arguments
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def parse_calls(text: str, names: set[str]) -> list[tuple[str, str]] | None:
    """(name, arguments as JSON text) for each call in `text`, or None when it holds none that are valid.

    As vLLM's llama3_json parser: an optional <|python_tag|>, JSON objects with `name` and `parameters` (or
    `arguments`), several separated by ";", prose before or after. A call to a tool not in `names`, or JSON that
    does not parse, means the answer is plain text."""
    decoder = json.JSONDecoder()
    start = text.find("{", text.find(PYTHON_TAG) + len(PYTHON_TAG) if PYTHON_TAG in text else 0)
    calls = []
    while 0 <= start < len(text):
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            return None
        if not isinstance(value, dict) or value.get("name") not in names:
            return None
        arguments = value.get("parameters", value.get("arguments", {}))
        if isinstance(arguments, str):  # some models write the arguments as JSON text
            arguments = _arguments(arguments)
        if not isinstance(arguments, dict):
            return None
        calls.append((value["name"], json.dumps(arguments, ensure_ascii=False)))
        rest = text[end:].lstrip()
        if not rest.startswith(";"):
            break
        start = end + text[end:].index(";") + 1
        while start < len(text) and text[start].isspace():
            start += 1
        if start >= len(text) or text[start] != "{":
            break
    return calls or None


def call_schema(tools: list[dict], name: str | None = None) -> dict:
    """The JSON schema of one call: {"name": a tool's name, "parameters": that tool's parameters}. One tool
    (or the named one) gives its name as a const; several give anyOf, one object per tool."""
    chosen = [t["function"] for t in tools if name is None or t["function"]["name"] == name]
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f["name"]},
                "parameters": f.get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["name", "parameters"],
        }
        for f in chosen
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless `schema` is a JSON schema we can constrain an answer with: bounded in size, depth
    and enum length, valid JSON Schema, every `$ref` local (`#/...`) and none leading back into itself."""
    if not isinstance(schema, dict):
        raise SchemaError("a JSON schema must be an object")
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise SchemaError(f"the schema is over {MAX_SCHEMA_CHARS:,} characters of JSON")
    _walk(schema, 0)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError as InvalidSchema

    try:
        Draft202012Validator.check_schema(schema)
    except InvalidSchema as exc:
        raise SchemaError(f"not a valid JSON schema: {exc.message}") from None
    _refs_end(schema)


def _walk(node: Any, depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list) and len(enum) > MAX_ENUM:
            raise SchemaError(f"an enum lists {len(enum):,} values; at most {MAX_ENUM} are accepted")
        ref = node.get("$ref")
        if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
            raise SchemaError(f"only local $ref ('#/...') are followed, not {str(ref)[:80]!r}")
        for value in node.values():
            _walk(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _walk(value, depth + 1)


def _refs_end(schema: dict) -> None:
    """A `$ref` that leads back to itself (directly or through others) would make the answer's grammar endless."""

    def target(ref: str) -> Any:
        node: Any = schema
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"the $ref {ref[:80]!r} points at nothing in the schema")
        return node

    def refs_in(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs_in(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs_in(v)]
        return []

    done: set[str] = set()  # refs whose every path ends: each is walked once, however many lead to it

    def visit(ref: str, path: tuple[str, ...]) -> None:
        if ref in path:
            raise SchemaError(f"the $ref {ref[:80]!r} refers back to itself (a recursive schema)")
        if ref in done:
            return
        for inner in refs_in(target(ref)):
            visit(inner, (*path, ref))
        done.add(ref)

    for ref in dict.fromkeys(refs_in(schema)):
        visit(ref, ())
