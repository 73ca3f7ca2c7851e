"""Which rows decode together, and what they hold of the KV budget.

A group is rows of close lengths decoded in one forward pass, left-padded to one width (`llm.batch_cache`).
`GroupPlanner` decides where a prefilled row goes and keeps the KV budget (`llm.kvcache.SessionCaches`) honest:
a request holds what its cache may grow to in a group of its own before it starts, and a group holds what its
rows may grow to, padding and spare room included, until they leave.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from core.errors import N_
from llm.batch_cache import BatchCache, padding_ok, spare_room
from llm.interface import BackendError
from llm.kvcache import SessionCaches
from llm.requests import Request, Row
from llm.static_step import StaticBatchCache, length_bucket, rows_bucket

log = logging.getLogger(__name__)

# Each group is a forward pass of the whole model per step, so beyond this many a row joins the group it pads
# least, if the KV budget holds the padding (else a group of its own).
MAX_GROUPS = 2


@dataclass(eq=False)
class Group:
    """Rows decoded in one forward pass: lengths close enough that padding them to one width is cheap."""

    cache: BatchCache
    rows: list[Row] = field(default_factory=list)
    held: int = 0  # bytes of the KV budget it holds: what its buffers can grow to before its rows end


class GroupPlanner:
    """Places rows in groups and holds their share of the KV budget (`caches`; None: no budget)."""

    def __init__(self, config, bytes_per_token: int, caches: SessionCaches | None, static: bool = False):
        self.config = config
        self.bytes_per_token = bytes_per_token
        self.caches = caches
        self.static = static  # groups in fixed-shape buckets, for the compiled step (`llm.static_step`)

    def worst_bytes(self, pads: list[int], finals: list[int]) -> int:
        """What a group's buffers can grow to: its pads stay while its rows are in it, each row grows to its final
        length, and every row is as wide as the widest (plus spare room)."""
        longest = max(p + f for p, f in zip(pads, finals))
        if self.static:  # the bucket its rows and length fall in, whole
            return rows_bucket(len(pads)) * length_bucket(longest + 1) * self.bytes_per_token
        return len(pads) * spare_room(longest) * self.bytes_per_token

    def need_bytes(self, request: Request) -> int:
        """The most this request's cache can take in a group of its own (joining a group that pads it is held then)."""
        return self.worst_bytes([0], [request.final])

    def reserve(self, row: Row, may_wait: bool, waiting: Iterable[Row]) -> bool:
        """Hold the KV budget `row` may need (idle caches are evicted for it). False: wait for answers in flight
        to end (only when `may_wait`). A request that could never fit is admitted only to be refused with the
        reason; to fit one that could, other `waiting` requests give up the kept caches they took."""
        budget, state = self.caches, row.state
        if budget is None:
            return True
        need = max(self.need_bytes(row.request), state.held)
        if budget.hold(need - state.held):
            state.held = need
            return True
        if may_wait:
            return False
        if need <= budget.budget_bytes:  # only other waiting requests' kept caches are in the way
            for other in waiting:
                if other is not row and other.state.kept is not None:
                    budget.release(other.state.held)
                    other.state.kept, other.state.held = None, 0
            if budget.hold(need - state.held):
                state.held = need
                return True
        mb = 2**20
        state.refused = BackendError(
            N_(
                "This answer could need {needed} MB of KV cache (a {prompt_tokens}-token prompt plus up to "
                "{max_new_tokens} new tokens), more than KV_CACHE_BUDGET_MB allows in all "
                "({budget} MB). Lower max new tokens, start a new chat, or raise "
                "KV_CACHE_BUDGET_MB."
            ),
            needed=math.ceil(need / mb),
            prompt_tokens=len(row.request.prompt_ids),
            max_new_tokens=row.request.options.max_new_tokens,
            budget=budget.budget_bytes // mb,
        )
        return True

    def join(self, groups: list[Group], row: Row, cache: DynamicCache) -> None:
        """Put a row in the group it grows least (in bytes held) within the padding bound; else in a new group (up
        to MAX_GROUPS); else in the group it grows least if the KV budget holds that; else in a group of its own.
        Bytes, not padded positions: a long row joining narrow rows widens all of them, one short row in a wide
        group pads only itself."""
        length, budget = cache.get_seq_length(), self.caches
        options = []
        for group in groups:
            pads = group.cache.pads_after(length)
            within = padding_ok(pads, max(group.cache.width, length))
            need = self.worst_bytes(pads, [other.request.final for other in group.rows] + [row.request.final])
            options.append((not within, need - group.held, need, group))
        options.sort(key=lambda option: option[:2])
        if len(groups) < MAX_GROUPS:
            options = [option for option in options if not option[0]]
        for _, _, need, group in options:
            extra = need - group.held - row.state.held
            if extra <= 0 or budget is None or budget.hold(extra):
                break
        else:
            layout = StaticBatchCache if self.static else BatchCache
            group, need = Group(layout(self.config)), self.need_bytes(row.request)
            extra = need - row.state.held
        try:
            group.cache.add(cache)
        except Exception:  # e.g. out of memory for the bigger buffers: the group is as it was
            if extra > 0 and budget is not None:
                budget.release(extra)
            raise
        group.rows.append(row)
        if extra < 0 and budget is not None:
            budget.release(-extra)  # e.g. a kept cache bigger than what this answer needs
        group.held, row.state.held = need, 0
        if group not in groups:
            groups.append(group)

    def leave(self, group: Group, index: int) -> tuple[Row, DynamicCache]:
        """Take row `index` out of its group; returns it and its cache, unpadded."""
        row = group.rows.pop(index)
        cache = group.cache.remove(index)
        need = self.worst_bytes(group.cache.pads, [r.request.final for r in group.rows]) if group.rows else 0
        if self.static and group.rows:  # a bucket's buffers are what they are, whatever its rows may still need
            need = max(need, group.cache.nbytes)
        self.release(group.held - need)  # the rest can grow to less now (fewer rows, less padding)
        group.held = need
        return row, cache

    def release(self, nbytes: int) -> None:
        if self.caches is not None and nbytes:
            self.caches.release(nbytes)


def rows_alone(runner, group: Group, tokens: torch.Tensor, width: int, exc: Exception) -> list:
    """After a failed forward pass of a group: each row alone (through views of the group's buffers), so a
    row that fails alone (too long for the memory left, a broken adapter) fails alone."""
    if len(group.rows) == 1:
        return [exc]
    log.warning(
        "a batched step of %d rows failed (%s); retrying them one at a time", len(group.rows), type(exc).__name__
    )
    if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        group.cache.reserve(1)
    except Exception as grow_failed:
        return [grow_failed] * len(group.rows)
    outcomes: list[torch.Tensor | BaseException] = []
    device = runner.device
    for index, row in enumerate(group.rows):
        try:
            view, inputs = group.cache.row_view(index), group.cache.step_inputs(device, index)
            outcomes.append(runner.forward(tokens[index : index + 1], view, row.request.adapter, **inputs))
        except Exception as row_failed:
            outcomes.append(row_failed)
    group.cache.set_width(width + 1)
    return outcomes
