"""The CPU kernel choice for small decode batches: same numbers as nn.Linear, and the loaded model uses it."""

import pytest
import torch
from torch import nn

from llm.skinny_linear import SKINNY_ROWS, SkinnyLinear, use_skinny_linears


def test_same_result_as_linear_for_every_row_count():
    torch.manual_seed(0)
    plain = nn.Linear(64, 96, bias=True)
    skinny = nn.Linear(64, 96, bias=True)
    skinny.load_state_dict(plain.state_dict())
    assert use_skinny_linears(skinny) == 1 and isinstance(skinny, SkinnyLinear)
    for shape in [(1, 1, 64), (3, 1, 64), (1, SKINNY_ROWS, 64), (2, 5, 64), (0, 1, 64), (4, 64)]:
        x = torch.randn(shape)
        expected = plain(x)
        got = skinny(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_only_plain_cpu_float32_linears_switch():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8).to(torch.bfloat16), nn.Embedding(10, 8))
    assert use_skinny_linears(model) == 1
    assert type(model[0]) is SkinnyLinear and type(model[1]) is nn.Linear


@pytest.mark.model
def test_the_loaded_demo_model_uses_it(demo_model):
    model = demo_model.model
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Linear)}
    assert kinds == {SkinnyLinear}
    # tied embeddings stay tied
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
