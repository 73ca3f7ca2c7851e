"""Linear layers that stay fast on CPU when only a few rows pass through them (the decode step of a small batch).

With one to seven token rows, `x @ W.T` on this project's CPU builds (MKL, 2 cores) is much slower than the same product
written as `(W @ x.T).T`: for the demo model a 3-row decode step cost 77 ms the first way and 41 ms the second, about
one row's 40 ms (`python -m bench --only 4` prints the effect on the team's consult step). From eight rows on, and for
prefill, the usual product is as fast or faster, so only skinny inputs take the other path. GPUs are left alone.
The swap changes the class of each `nn.Linear` in place (weights, tied weights and state dicts stay as they are);
it is done once at load time, before any request, and never per user.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SKINNY_ROWS = 7  # measured: 1-7 rows faster the transposed way, 8 rows slower


class SkinnyLinear(nn.Linear):
    """An `nn.Linear` whose product is taken weight-first when at most `SKINNY_ROWS` rows come in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if rows == 0 or rows > SKINNY_ROWS:
            return F.linear(x, self.weight, self.bias)
        y = (self.weight @ x.reshape(rows, x.shape[-1]).T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def use_skinny_linears(model: nn.Module) -> int:
    """Switch every plain `nn.Linear` of a CPU float32 model to `SkinnyLinear`. Returns how many were switched."""
    switched = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32:
            module.__class__ = SkinnyLinear
            switched += 1
    return switched
