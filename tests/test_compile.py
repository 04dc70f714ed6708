"""torch.compile of SkipConv models: one graph, no graph breaks, no recompiles, and the compiled model computes
what the eager one does (forward and gradients)."""
import pytest
import torch
import torch.nn as nn

from skipconv_det import SkipConv2d

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        SkipConv2d(3, 8, 3, padding=1, bias=False, fill='zero'), nn.BatchNorm2d(8), nn.ReLU(),
        SkipConv2d(8, 8, 3, stride=2, padding=1, bias=False, fill='nearest', skip_pattern='grid',
                   shift_channels=True), nn.BatchNorm2d(8), nn.ReLU(),
        SkipConv2d(8, 16, 1, fill='linear', skip_pattern='row'), nn.ReLU())


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('grad', [False, True], ids=['no_grad', 'grad'])
def test_one_graph_without_breaks(layout, train, grad):
    model = _model().train(train).to(memory_format=layout)
    with torch.set_grad_enabled(grad):  # inference is compiled under no_grad, training with gradients
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 15, 16).contiguous(memory_format=layout))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


@pytest.mark.parametrize('layout', LAYOUTS)
def test_compiled_matches_eager_without_recompiles(layout):
    torch._dynamo.reset()
    model = _model().to(memory_format=layout)
    compiled = torch.compile(model, backend='aot_eager')

    def check(train, seed):
        model.train(train)
        x = torch.randn(2, 3, 15, 16, generator=torch.Generator().manual_seed(seed))
        x_eager, x_compiled = (x.contiguous(memory_format=layout).requires_grad_() for _ in range(2))
        out, expected = compiled(x_compiled), model(x_eager)
        torch.testing.assert_close(out, expected)
        grad = torch.randn_like(expected)
        out.backward(grad)
        expected.backward(grad)
        torch.testing.assert_close(x_compiled.grad, x_eager.grad)

    for train in (True, False):  # one graph per mode (BatchNorm's own guard)
        check(train, 0)
    with torch._dynamo.config.patch(error_on_recompile=True):  # ... and nothing recompiles after that
        for train in (True, False):
            check(train, 1)
