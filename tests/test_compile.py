"""torch.compile of SkipConv models: one graph, no graph breaks, no recompiles, and the compiled model computes
what the eager one does (forward and gradients)."""
import pytest
import torch
import torch.nn as nn

from skipconv_det import SkipConv2d
from skipconv_det.ops import compile_mode
from ._tiers import full, full_only

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        SkipConv2d(3, 8, 3, padding=1, bias=False, fill='zero'), nn.BatchNorm2d(8), nn.ReLU(),
        SkipConv2d(8, 8, 3, stride=2, padding=1, bias=False, fill='nearest', skip_pattern='grid',
                   shift_channels=True), nn.BatchNorm2d(8), nn.ReLU(),
        SkipConv2d(8, 16, 1, fill='linear', skip_pattern='row'), nn.ReLU())


# `make test-fast`: a training step in NCHW; `make test`: every mode and layout.
@pytest.mark.parametrize('layout', full_only(LAYOUTS, fast=(torch.contiguous_format, )))
@pytest.mark.parametrize('train', full_only([False, True], fast=(True, )))
@pytest.mark.parametrize('grad', full_only([False, True], fast=(True, )), ids=['no_grad', 'grad'])
def test_one_graph_without_breaks(layout, train, grad):
    model = _model().train(train).to(memory_format=layout)
    with torch.set_grad_enabled(grad):  # inference is compiled under no_grad, training with gradients
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 15, 16).contiguous(memory_format=layout))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


@full
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


def _graph_ops(explanation):
    return {str(node.target) for graph in explanation.graphs for node in graph.graph.nodes}


@pytest.mark.parametrize('mode', full_only(['opaque', 'traced'], fast=('opaque', )))
@pytest.mark.parametrize('grad', full_only([False, True], fast=(False, )), ids=['no_grad', 'grad'])
def test_compile_mode_decides_what_the_graph_holds(mode, grad):
    """Inference compiles each SkipConv as one custom op by default ('opaque'); with gradients, or with
    ``compile_mode('traced')``, its PyTorch formulation is traced."""
    model = _model().eval()
    with compile_mode(mode), torch.set_grad_enabled(grad):
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 15, 16))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
    opaque = [op for op in _graph_ops(explanation) if 'skipconv_det.skip_conv2d' in op]
    assert len(opaque) == (1 if mode == 'opaque' and not grad else 0), _graph_ops(explanation)


@full
@pytest.mark.parametrize('layout', LAYOUTS)
def test_opaque_op_under_inductor_matches_eager(layout):
    """The custom op's fake implementation gives the real output's shape and strides, which inductor plans its
    kernels around: the compiled model equals the eager one, in both layouts."""
    torch._dynamo.reset()
    model = _model().eval().to(memory_format=layout)
    x = torch.randn(2, 3, 15, 16).contiguous(memory_format=layout)
    with torch.no_grad():
        compiled, expected = torch.compile(model)(x), model(x)
    torch.testing.assert_close(compiled, expected)
    assert compiled.stride() == expected.stride()


def test_compile_mode_refuses_unknown_modes():
    with pytest.raises(ValueError, match='opaque, traced'):
        with compile_mode('fused'):
            pass
