"""Stop strings: an answer's text pieces cut before the first of the request's `stop` strings."""

from __future__ import annotations

from collections.abc import Iterator


class StopStrings:
    """Text pieces up to the first stop string (which is left out). A tail that could begin a stop
    string is held back until the next piece settles it. Ending early closes the source, so the
    computation stops with the text.

    Linear in the text: each piece is searched together with the held tail only (for each stop, its length
    minus one), so the work per piece is bounded by the piece and the stops (`schemas.MAX_STOPS` of
    `MAX_STOP_CHARS`), never by what was generated before."""

    def __init__(self, pieces: Iterator[str], stops: list[str]):
        self.source, self.stops, self.hit = pieces, [s for s in dict.fromkeys(stops) if s], False
        self._ending: dict[str, list[str]] = {}  # the stops by their last character: the only ones to try there
        for stop in self.stops:
            self._ending.setdefault(stop[-1], []).append(stop)
        self._iter = self._run()

    def __iter__(self):
        return self._iter

    def __next__(self) -> str:
        return next(self._iter)

    def _run(self) -> Iterator[str]:
        if not self.stops:
            yield from self.source
            return
        hold = max(map(len, self.stops)) - 1
        window, sent = "", 0  # window[sent:] is not given out yet; its last `hold` characters are held back
        for piece in self.source:
            window += piece
            # Earlier text held no stop, so one found now ends in the new piece: only those ends are tried (a
            # comparison each, no search through the window).
            found = [
                end + 1 - len(stop)
                for end in range(len(window) - len(piece), len(window))
                for stop in self._ending.get(window[end], ())
                if end + 1 >= len(stop) and window.startswith(stop, end + 1 - len(stop))
            ]
            if found:
                self.hit = True
                if min(found) > sent:
                    yield window[sent : min(found)]
                self.close()
                return
            if len(window) - hold > sent:
                yield window[sent : len(window) - hold]
                sent = len(window) - hold
            if sent > 4 * hold + 4096:  # forget what was given out, now and then (not on each piece: no copying)
                window, sent = window[sent:], 0
        if len(window) > sent:
            yield window[sent:]

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
