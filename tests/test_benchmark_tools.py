"""The layer and model benchmarks and profilers behind tools/benchmark.py, on a tiny layer and a small model
(timings themselves are not tested). Tests that run a benchmark or a profiler are marked ``full`` (`make test`
only); those on fixed timings run in `make test-fast` too."""
import json

import pytest
import torch

from skipconv_det.analysis import layer_benchmark, model_benchmark
from skipconv_det.analysis.layer_benchmark import benchmark_layer, format_layer_table, plot_speedups, profile_layer
from skipconv_det.analysis.model_benchmark import benchmark_model, format_model_table, profile_model
from skipconv_det.inference.write import kernel_applies as write_kernel_applies
from ._tiers import full

CIFAR_RESNET = 'configs/classification/resnet56_8xb16_cifar10.py'
RESNET20 = {'model.backbone.depth': 20}  # the config's ResNet at depth 20: a third of the layers to time


@full
def test_benchmark_layer_rows_and_table(tmp_path):
    rows = benchmark_layer(4, 6, 9, 8, patterns=[('checkerboard', False, 'zero'), ('grid', True, 'linear')],
                           backward=True, warmup=1, repeats=2)
    assert [(r['skip_pattern'], r['shift_channels'], r['fill'], r['limit']) for r in rows] == [
        ('checkerboard', False, 'zero', 2.0), ('grid', True, 'linear', 4.0)]
    for r in rows:
        assert set(r['dense_ms']) == set(r['skip_ms']) == {'nchw', 'channels_last'}
        assert r['speedup'] == min(r['dense_ms'].values()) / min(r['skip_ms'].values())
    table = format_layer_table(rows)
    assert '| 4→6 @ 9x8, 3x3, s1 | fwd+bwd | grid+shift/linear |' in table
    json.dumps(rows)  # what --json writes
    plot_speedups(rows, str(tmp_path / 'speedup.png'))
    assert (tmp_path / 'speedup.png').stat().st_size > 0


def test_speedup_is_best_dense_layout_over_best_skip_layout(monkeypatch):
    """With fixed timings: each side counts in its faster layout, whichever layout that is."""
    medians = {('dense', 'nchw'): 8.0, ('dense', 'channels_last'): 6.0,
               (('checkerboard', False, 'zero'), 'nchw'): 4.0, (('checkerboard', False, 'zero'), 'channels_last'): 3.0,
               (('grid', True, 'linear'), 'nchw'): 1.5, (('grid', True, 'linear'), 'channels_last'): 5.0}
    monkeypatch.setattr(layer_benchmark, 'measure_latencies',
                        lambda calls, **kwargs: {key: dict(median_ms=medians[key]) for key in calls})
    rows = benchmark_layer(4, 6, 9, 8, patterns=[('checkerboard', False, 'zero'), ('grid', True, 'linear')])
    assert [r['speedup'] for r in rows] == [2.0, 4.0]
    assert rows[1]['dense_ms'] == {'nchw': 8.0, 'channels_last': 6.0}
    assert rows[1]['skip_ms'] == {'nchw': 1.5, 'channels_last': 5.0}


def test_model_ratio_is_best_skip_layout_over_best_dense_layout(monkeypatch):
    times = dict(dense={'inference': {'nchw': 10.0, 'channels_last': 8.0}},
                 skipconv={'inference': {'nchw': 6.0, 'channels_last': 4.0}})
    monkeypatch.setattr(model_benchmark, '_dense_and_skipconv', lambda *args: ({}, 'mmpretrain'))
    monkeypatch.setattr(model_benchmark, 'time_models', lambda *args, **kwargs: (times, times))
    assert benchmark_model(CIFAR_RESNET, (16, 16), memory=False)['ratio'] == {'inference': 0.5}


def test_model_memory_ratio_is_best_skip_layout_over_best_dense_layout(monkeypatch):
    peaks = dict(dense={'train step': {'nchw': 4 << 30, 'channels_last': 5 << 30}},
                 skipconv={'train step': {'nchw': 7 << 30, 'channels_last': 6 << 30}})
    monkeypatch.setattr(model_benchmark, '_dense_and_skipconv', lambda *args: ({}, 'mmpretrain'))
    monkeypatch.setattr(model_benchmark, 'time_models', lambda *args, **kwargs: (dict(dense={}, skipconv={}), ) * 2)
    monkeypatch.setattr(model_benchmark, 'measure_models_memory', lambda *args, **kwargs: dict(peaks))
    result = benchmark_model(CIFAR_RESNET, (16, 16))
    assert result['memory']['ratio'] == {'train step': 1.5}
    assert '| train step | 4.000 | 5.000 | 7.000 | 6.000 | 1.50× |' in format_model_table(result)


@full
def test_profile_layer_shows_the_ops_of_both():
    text = profile_layer(4, 6, 9, 8, skip_pattern='grid', layout='nchw', backward=True, runs=1, top=100)
    skip, dense = text.split('## dense')
    assert skip.startswith('## SkipConv grid/linear, 4->6 @ 9x8, nchw, fwd+bwd')
    for part in (skip, dense):  # both ran a convolution forward and backward
        assert 'aten::_convolution' in part and 'backward' in part and 'Self CPU time total' in part
    assert '_Scatter' in skip and '_Scatter' not in dense


@full
def test_benchmark_model_times_both_models_per_stage_and_layout():
    result = benchmark_model(CIFAR_RESNET, (16, 16), cfg_options=RESNET20, warmup=0, repeats=1)
    stages = ['backbone', 'backbone+neck', 'inference', 'train step']
    for name in ('dense', 'skipconv'):
        assert list(result[name]) == stages
        assert all(set(result[name][stage]) == {'nchw', 'channels_last'} for stage in stages)
    assert result['ratio']['inference'] == (min(result['skipconv']['inference'].values()) /
                                            min(result['dense']['inference'].values()))
    memory = result['memory']
    for name in ('dense', 'skipconv'):  # at least ResNet-20's 0.27 M float32 parameters, in both layouts
        assert list(memory[name]) == ['inference', 'train step']
        inference, train = memory[name]['inference'], memory[name]['train step']
        assert set(inference) == set(train) == {'nchw', 'channels_last'}
        assert all(4 * 0.27e6 < inference[layout] < train[layout] for layout in inference)
    assert memory['ratio']['train step'] == (min(memory['skipconv']['train step'].values()) /
                                             min(memory['dense']['train step'].values()))
    table = format_model_table(result)
    assert table.count('\n| ') == (1 + len(stages)) + (1 + len(memory['ratio'])) and '@ 16x16, cpu' in table
    assert '\nMem (GB)' in table
    json.dumps(result)  # what --json writes


@full
def test_profile_model_shows_skipconv_work_beside_dense():
    text = profile_model(CIFAR_RESNET, (16, 16), stage='train step', layout='nchw', top=100)
    header, *rows = [line for line in text.splitlines() if line.startswith('| ')]
    assert header == '| op | dense ms | SkipConv ms | dense calls | SkipConv calls |'
    by_op = {row.split(' | ')[0][2:]: row.split(' | ')[1:] for row in rows}
    assert by_op['_Scatter'][0] == '-' and by_op['_Scatter'][1] != '-'  # only SkipConv scatters its lattices
    assert 'aten::convolution_backward' in by_op  # a training step ran the backward
    dense_total = float(by_op['total'][0])
    assert dense_total > 0 and abs(sum(float(v[0]) for op, v in by_op.items() if op != 'total' and v[0] != '-') -
                                   dense_total) < 0.05 * dense_total + 0.5  # the table's ops add up to the total


@full
def test_benchmark_model_compiled_rows_are_against_the_best_dense(monkeypatch):
    compiled = []
    # The rows and their ratios; tests/test_compile.py covers what compiling a SkipConv model does.
    monkeypatch.setattr(torch, 'compile', lambda fn: compiled.append(fn) or fn)
    result = benchmark_model(CIFAR_RESNET, (16, 16), cfg_options=RESNET20, train=False, compile=True, warmup=0,
                             repeats=1)
    assert len(compiled) == 2 * len(model_benchmark.LAYOUTS) * len(model_benchmark.COMPILED_STAGES)
    for stage in model_benchmark.COMPILED_STAGES:
        best_dense = min(*result['dense'][stage].values(), *result['dense'][f'{stage} compiled'].values())
        assert result['ratio'][f'{stage} compiled'] == min(
            result['skipconv'][f'{stage} compiled'].values()) / best_dense
        assert result['ratio'][stage] == min(result['skipconv'][stage].values()) / best_dense


@full
def test_benchmark_model_with_bn_folded():
    result = benchmark_model(CIFAR_RESNET, (16, 16), cfg_options=RESNET20, fuse_bn=True, warmup=0, repeats=1)
    assert result['fuse_bn'] and 'train step' not in result['dense']  # folded models are for inference
    assert list(result['memory']['ratio']) == ['inference']
    assert 'BN folded' in format_model_table(result)


@full
def test_model_benchmark_times_only_the_layouts_asked_for(capsys):
    from skipconv_det.cli.benchmark import run_benchmark
    report = run_benchmark(['model', CIFAR_RESNET, '--shape', '16', '16', '--no-train', '--no-memory', '--warmup', '0',
                            '--repeats', '1', '--layouts', 'channels_last'])
    result = report['result']
    for name in ('dense', 'skipconv'):
        assert all(set(times) == {'channels_last'} for times in result[name].values())
    assert result['ratio']['backbone'] == result['skipconv']['backbone']['channels_last'] / \
        result['dense']['backbone']['channels_last']
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith('| backbone |'))
    assert row.split(' | ')[1] == '-' and row.split(' | ')[3] == '-'  # the NCHW columns: not timed


@full
def test_profile_model_shows_the_optimized_model_beside_dense():
    # BN folded in all three models; the optimized model's write kernel is named where it runs.
    text = profile_model(CIFAR_RESNET, (16, 16), stage='inference', layout='channels_last', top=100,
                         cfg_options=RESNET20, optimize_for_inference=True, batch_size=2)
    header, *rows = [[cell.strip() for cell in line.strip('|').split('|')] for line in text.splitlines()
                     if line.startswith('| ')]
    assert header == ['op', 'dense ms', 'SkipConv ms', 'SkipConv optimized ms', 'dense calls', 'SkipConv calls',
                      'SkipConv optimized calls']
    assert 'BN folded' in text and 'batch 2' in text
    by_op = {row[0]: row[1:] for row in rows}
    assert 'aten::native_batch_norm' not in by_op  # folded
    if write_kernel_applies(torch.empty(1)):
        assert by_op['skipconv_det_lattice::write_regions'][:2] == ['-', '-']
        assert float(by_op['skipconv_det_lattice::write_regions'][2]) > 0
    assert all(float(total) > 0 for total in by_op['total'][:3])


def test_profile_model_refuses_bn_folding_in_a_training_step():
    with pytest.raises(ValueError, match='inference'):
        profile_model(CIFAR_RESNET, (16, 16), stage='train step', fuse_bn=True)

