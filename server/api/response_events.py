"""A streamed response's output items: chat-completion deltas (`tools.AnswerShape`) in, the Responses API's
documented events out (`response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
`response.function_call_arguments.delta`, then each item's `.done` events)."""

from __future__ import annotations


class ItemWriter:
    """Chat-completion deltas (`AnswerShape`) in, Responses output-item events out."""

    def __init__(self, event, answer_id: str):
        self.event = event
        self.answer_id = answer_id  # the stored answer's message id: items get the ids `items.to_items` gives them
        self.message_id = f"msg_{answer_id}"
        self.text: list[str] | None = None  # the text item's text, once it started
        self.calls: dict[int, dict] = {}  # call index -> its function_call item
        self.order: list[str] = []  # "text" or call index, by output_index

    def delta(self, delta: dict) -> list[str]:
        out = []
        if delta.get("content"):
            if self.text is None:
                self.text, index = [], len(self.order)
                self.order.append("text")
                item = {
                    "id": self.message_id,
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
                out.append(self.event("response.output_item.added", output_index=index, item=item))
                part = {"type": "output_text", "text": "", "annotations": []}
                out.append(
                    self.event(
                        "response.content_part.added",
                        item_id=self.message_id,
                        output_index=index,
                        content_index=0,
                        part=part,
                    )
                )
            self.text.append(delta["content"])
            out.append(
                self.event(
                    "response.output_text.delta",
                    item_id=self.message_id,
                    output_index=self.order.index("text"),
                    content_index=0,
                    delta=delta["content"],
                    logprobs=[],
                )
            )
        for call in delta.get("tool_calls") or []:
            index = call["index"]
            if index not in self.calls:
                self.calls[index] = {
                    "id": f"fc_{self.answer_id}" + (f"-{index}" if index else ""),
                    "type": "function_call",
                    "status": "in_progress",
                    "call_id": call.get("id", ""),
                    "name": call["function"]["name"],
                    "arguments": "",
                }
                self.order.append(index)
                out.append(
                    self.event(
                        "response.output_item.added", output_index=self.order.index(index), item={**self.calls[index]}
                    )
                )
                continue
            piece = call["function"].get("arguments", "")
            self.calls[index]["arguments"] += piece
            out.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=self.calls[index]["id"],
                    output_index=self.order.index(index),
                    delta=piece,
                )
            )
        return out

    def close(self) -> list[str]:
        out = []
        for position, key in enumerate(self.order):
            if key == "text":
                text = "".join(self.text or [])
                out.append(
                    self.event(
                        "response.output_text.done",
                        item_id=self.message_id,
                        output_index=position,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
                part = {"type": "output_text", "text": text, "annotations": []}
                out.append(
                    self.event(
                        "response.content_part.done",
                        item_id=self.message_id,
                        output_index=position,
                        content_index=0,
                        part=part,
                    )
                )
                item = {
                    "id": self.message_id,
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [part],
                }
                out.append(self.event("response.output_item.done", output_index=position, item=item))
            else:
                call = {**self.calls[key], "status": "completed"}
                out.append(
                    self.event(
                        "response.function_call_arguments.done",
                        item_id=call["id"],
                        output_index=position,
                        arguments=call["arguments"],
                        name=call["name"],
                    )
                )
                out.append(self.event("response.output_item.done", output_index=position, item=call))
        return out
