"""The tokens' log probabilities of an API answer, handed out with the text they belong to."""

from __future__ import annotations

from collections.abc import Iterator


class Logprobs:
    """The answer's pieces passed on unchanged, with the tokens' log probabilities they carry kept aside (stop
    strings cut pieces into new strings, which would drop them), each at the byte of the answer where it starts.
    The route hands them out as the text they belong to is sent (`upto`)."""

    def __init__(self, pieces: Iterator[str]):
        self.source = pieces
        self.entries: list = []  # llm.interface.TokenLogprob, in answer order
        self.starts: list[int] = []  # where each entry starts, in bytes of answer text
        self.given = 0  # entries handed out so far
        self._end = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        piece = next(self.source)
        for entry in getattr(piece, "logprobs", ()):
            self.entries.append(entry)
            self.starts.append(self._end)
            self._end += len(entry.bytes)
        return piece

    def upto(self, sent_bytes: int | None) -> list[dict]:
        """OpenAI's `logprobs.content` for the tokens not handed out yet that start within the first `sent_bytes`
        bytes of the answer (None: all of them)."""
        end = self.given
        while end < len(self.entries) and (sent_bytes is None or self.starts[end] < sent_bytes):
            end += 1
        given, self.given = self.given, end
        return [entry.as_dict() for entry in self.entries[given:end]]

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
