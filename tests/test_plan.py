"""The FLOPs-budget planner (tools/plan.py): the choice is the least-cost one that meets the budget, the FLOPs it
predicts are the ones mmengine.analysis counts, the config it writes builds exactly the planned layers, and the
tool runs end to end on a tiny classifier."""
import copy
import glob
import itertools
import json
import os.path as osp
import random
import re

import pytest
import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from skipconv_det import SkipConv2d
from skipconv_det.apis.plan import (DENSE, ConvGeometry, LayerCost, candidate_layers, choose_settings,
                                    format_plan_config, layer_geometry, mean_loss, measure_costs, setting_flops)
from skipconv_det.models.skip_setting import SkipSetting
from ._tiers import full_only

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
RESNET20 = osp.join(ROOT, 'configs', 'demo', 'resnet20_1xb64-24e_synthetic-cifar10.py')
CHECKERBOARD, GRID_SHIFT = SkipSetting('checkerboard'), SkipSetting('grid', True)


def _random_costs(rng, num_layers):
    costs = []
    for n in range(num_layers):
        dense = rng.randrange(100, 1000)
        costs.append(LayerCost(f'layer{n}', [(8, 8, 8)], {DENSE: dense, 'a': dense // 2, 'b': dense // 4},
                               {DENSE: 0.0, 'a': rng.uniform(0, 1), 'b': rng.uniform(0, 2)}))
    return costs


def _flops_of(costs, plan):
    return sum(c.flops[plan[c.name]] for c in costs)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('flops_ratio', [0.9, 0.7, 0.55, 0.4])
def test_choice_meets_the_budget_at_the_least_cost(seed, flops_ratio):
    rng = random.Random(seed)
    costs = _random_costs(rng, 5)
    fixed = 500  # FLOPs outside the candidate layers
    total = fixed + sum(c.flops[DENSE] for c in costs)
    plan = choose_settings(costs, total, flops_ratio, resolution=4000)
    assert fixed + _flops_of(costs, plan) <= flops_ratio * total
    cost = sum(c.loss_increase[plan[c.name]] for c in costs)
    # Brute force over every combination: nothing that meets the budget costs less (up to the DP's rounding of
    # each saving to 1/4000 of the required saving, which only ever makes it more careful).
    required = total - flops_ratio * total
    slack = len(costs) * required / 4000
    best_exact = best_with_slack = float('inf')
    for choice in itertools.product(*[list(c.flops) for c in costs]):
        saved = sum(c.flops[DENSE] - c.flops[k] for c, k in zip(costs, choice))
        value = sum(c.loss_increase[k] for c, k in zip(costs, choice))
        if saved >= required:
            best_exact = min(best_exact, value)
        if saved >= required + slack:
            best_with_slack = min(best_with_slack, value)
    assert best_exact - 1e-9 <= cost <= best_with_slack + 1e-9


def test_no_saving_needed_keeps_every_layer_dense_and_an_impossible_budget_raises():
    costs = _random_costs(random.Random(0), 3)
    total = sum(c.flops[DENSE] for c in costs)
    assert set(choose_settings(costs, total, 1.0).values()) == {DENSE}
    lowest = sum(c.flops['b'] for c in costs) / total
    with pytest.raises(ValueError, match=f'{lowest:.3f}'):
        choose_settings(costs, total, lowest - 0.01)


def test_a_loss_decrease_counts_as_no_change():
    # Skipping 'noisy' measured a lower loss: it is not chosen just for that, the budget holds without it.
    costs = [LayerCost('noisy', [(1, 2, 2)], {DENSE: 100, 'a': 50}, {DENSE: 0.0, 'a': -0.5}),
             LayerCost('needed', [(1, 2, 2)], {DENSE: 100, 'a': 50}, {DENSE: 0.0, 'a': 0.1})]
    plan = choose_settings(costs, 200, 0.75)
    assert _flops_of(costs, plan) <= 150


class _SharedConv(nn.Module):
    """One conv applied to two maps, as RPNHead.rpn_conv is to every FPN level."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x).sum() + self.conv(x[..., ::2, ::2]).sum()


@pytest.mark.parametrize('setting', full_only([CHECKERBOARD, GRID_SHIFT, SkipSetting('row')], fast=(GRID_SHIFT, )))
@pytest.mark.parametrize('size, stride', [((7, 9), 1), ((10, 13), 2)])
def test_setting_flops_are_what_mmengine_counts(setting, size, stride):
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=1, bias=False)
    x = torch.rand(1, 6, *size)
    model = _SharedConv(conv)
    geometry = layer_geometry(model, ['conv'], x, None)['conv']
    assert geometry == ConvGeometry(6 * 9, [tuple(conv(x).shape[1:]), tuple(conv(x[..., ::2, ::2]).shape[1:])])
    assert setting_flops(geometry) == FlopAnalyzer(model, x).total()
    skip = _SharedConv(SkipConv2d(6, 10, 3, stride=stride, padding=1, bias=False, **setting.conversion_kwargs()))
    assert setting_flops(geometry, setting) == FlopAnalyzer(skip, x).total()


@pytest.fixture(scope='module')
def resnet20():
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(RESNET20).model)
    return model


def test_candidates_geometry_and_costs_leave_the_model_dense(resnet20):
    names = candidate_layers(resnet20)
    assert len(names) == 21 and names[0] == 'backbone.conv1'  # every conv; the linear head is no conv
    assert candidate_layers(resnet20, exclude=('*downsample*', )) == [n for n in names if 'downsample' not in n]
    assert candidate_layers(resnet20, kernel_sizes=[1]) == [n for n in names if 'downsample' in n] != []
    inputs = torch.rand(2, 3, 32, 32)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(k) for k in (1, 3)]
    geometry = layer_geometry(resnet20, names, inputs, samples)
    assert geometry['backbone.layer3.0.conv2'] == ConvGeometry(64 * 9, [(64, 8, 8)])
    state = {k: v.clone() for k, v in resnet20.state_dict().items()}
    names = names[:2]
    batches = [dict(inputs=inputs, data_samples=samples)]
    base, costs = measure_costs(resnet20, names, [CHECKERBOARD, GRID_SHIFT], batches, geometry, log=lambda line: None)
    assert [c.name for c in costs] == names and base > 0
    for cost in costs:
        assert cost.flops[str(GRID_SHIFT)] < cost.flops[str(CHECKERBOARD)] < cost.flops[DENSE]
        assert cost.loss_increase[DENSE] == 0 and cost.loss_increase[str(CHECKERBOARD)] != 0
    assert not any(isinstance(m, SkipConv2d) for m in resnet20.modules())
    assert all(torch.equal(v, state[k]) for k, v in resnet20.state_dict().items())


def _labelled_batch(inputs):
    from mmpretrain.structures import DataSample
    return dict(inputs=inputs, data_samples=[DataSample().set_gt_label(k % 10) for k in range(len(inputs))])


def test_batch_statistics_give_the_training_loss_and_leave_the_running_ones(resnet20):
    # Inputs far from what the fresh running statistics (mean 0, var 1) describe: the two losses differ.
    batches = [_labelled_batch(torch.rand(4, 3, 32, 32) * 4 + 2)]
    state = {k: v.clone() for k, v in resnet20.state_dict().items()}
    resnet20.eval()
    running, batch = (mean_loss(resnet20, batches, bn_stats=s) for s in ('running', 'batch'))
    assert all(torch.equal(v, state[k]) for k, v in resnet20.state_dict().items())
    norms = [m for m in resnet20.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(not m.training and m.track_running_stats for m in norms)
    training = copy.deepcopy(resnet20).train()  # what a training step computes, its BN updates on a copy
    with torch.no_grad():
        expected, _ = training.parse_losses(training(**batches[0], mode='loss'))
    assert batch == pytest.approx(float(expected), rel=1e-5)
    assert abs(batch - running) > 0.1
    with pytest.raises(ValueError, match='bn_stats'):
        mean_loss(resnet20, batches, bn_stats='eval')


def test_written_config_builds_exactly_the_planned_layers(tmp_path, resnet20):
    plan = {name: DENSE for name in candidate_layers(resnet20)}
    plan['backbone.conv1'] = str(GRID_SHIFT)
    plan['backbone.layer2.0.downsample.0'] = str(GRID_SHIFT)
    plan['backbone.layer1.1.conv2'] = 'checkerboard/zero'
    out = tmp_path / 'sub' / 'planned.py'
    out.parent.mkdir()
    out.write_text(format_plan_config(RESNET20, str(out), plan, ['a header line']))
    cfg = Config.fromfile(str(out))
    assert cfg.train_cfg == Config.fromfile(RESNET20).train_cfg  # inherited: only the model changes
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    built = {name: (m.skip_pattern, m.shift_channels, m.fill) for name, m in model.named_modules()
             if isinstance(m, SkipConv2d)}
    assert built == {'backbone.conv1': ('grid', True, 'linear'),
                     'backbone.layer2.0.downsample.0': ('grid', True, 'linear'),
                     'backbone.layer1.1.conv2': ('checkerboard', False, 'zero')}
    assert out.read_text().startswith('# a header line\n')


@pytest.mark.e2e
def test_plan_tool_end_to_end(tmp_path):
    from skipconv_det.apis.plan import measure_config
    from skipconv_det.cli.plan import run_plan
    from skipconv_det.datasets.synthetic_cls import write_cifar

    data = write_cifar(str(tmp_path / 'data'), 16, 4, difficulty='hard')
    out = tmp_path / 'planned.py'
    options = [f'train_dataloader.dataset.data_root={data}', 'train_dataloader.batch_size=4']
    result = run_plan([RESNET20, '--flops-ratio', '0.6', '--out', str(out), '--work-dir', str(tmp_path / 'wd'),
                       '--warmup-iters', '2', '--batches', '1', '--bn-stats', 'batch', '--cfg-options', *options])
    dense, planned = (result['flops'][k]['flops']['total'] for k in ('dense', 'planned'))
    assert planned <= 0.6 * dense
    # The predicted ratio is the counted one (the head and the pooling are the same in both).
    assert planned / dense == pytest.approx(result['predicted_flops_ratio'], abs=1e-3)
    assert Config.fromfile(str(out)).model.type == 'SkipConvModel'
    assert 'BN batch statistics' in out.read_text().splitlines()[3]
    # The measurements are reused for another budget of the same config and settings, and redone for others.
    lines = []
    again = measure_config(RESNET20, str(tmp_path / 'wd'), warmup_iters=2, num_batches=1, log=lines.append,
                           bn_stats='batch',
                           cfg_options={'train_dataloader.dataset.data_root': data, 'train_dataloader.batch_size': 4})
    assert lines == [f'measurements reused from {tmp_path / "wd" / "sensitivity.json"}']
    assert again['layers'] == json.loads((tmp_path / 'wd' / 'sensitivity.json').read_text())['layers']
    lines = []
    measure_config(RESNET20, str(tmp_path / 'wd'), warmup_iters=2, num_batches=1, log=lines.append,
                   cfg_options={'train_dataloader.dataset.data_root': data, 'train_dataloader.batch_size': 4})
    assert lines[0].startswith('dense loss') and 'BN running statistics' in lines[0]


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*-skipconv-*plan*cifar10.py'))),
                         ids=osp.basename)
def test_committed_classification_plans_meet_their_budget(config):
    """The planned configs in configs/demo/ still build with the current conversion and base configs, and on the
    32x32 images they were planned on cost at most the FLOPs ratio in their name (against the same model with
    every layer reverted to dense)."""
    from skipconv_det.analysis.flops import compare_flops

    budget = float(re.search(r'-plan([0-9.]+)_', osp.basename(config)).group(1))
    assert Config.fromfile(config).model.type == 'SkipConvModel'
    assert compare_flops(config, (32, 32))['ratio']['total'] <= budget
