"""The layer benchmark and profiler behind tools/benchmark.py, on a tiny layer (timings themselves are not tested)."""
import json

from skipconv_det.analysis.layer_benchmark import benchmark_layer, format_layer_table, plot_speedups, profile_layer


def test_benchmark_layer_rows_and_table(tmp_path):
    rows = benchmark_layer(4, 6, 9, 8, patterns=[('checkerboard', False), ('grid', True)], backward=True,
                           warmup=1, repeats=2)
    assert [(r['skip_pattern'], r['shift_channels'], r['limit']) for r in rows] == [('checkerboard', False, 2.0),
                                                                                  ('grid', True, 4.0)]
    for r in rows:
        assert set(r['dense_ms']) == set(r['skip_ms']) == {'nchw', 'channels_last'}
        assert r['speedup'] == min(r['dense_ms'].values()) / min(r['skip_ms'].values())
    table = format_layer_table(rows)
    assert '| 4→6 @ 9x8, 3x3, s1 | fwd+bwd | grid+shift |' in table
    json.dumps(rows)  # what --json writes
    plot_speedups(rows, str(tmp_path / 'speedup.png'))
    assert (tmp_path / 'speedup.png').stat().st_size > 0


def test_profile_layer_shows_the_ops_of_both():
    text = profile_layer(4, 6, 9, 8, skip_pattern='grid', layout='nchw', backward=True, runs=1, top=100)
    skip, dense = text.split('## dense')
    assert skip.startswith('## SkipConv grid, 4->6 @ 9x8, nchw, fwd+bwd')
    for part in (skip, dense):  # both ran a convolution forward and backward
        assert 'aten::_convolution' in part and 'backward' in part and 'Self CPU time total' in part
    assert '_Scatter' in skip and '_Scatter' not in dense
