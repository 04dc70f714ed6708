"""The accuracy study's variants (tools/ablation.py): parsing, the models they build, and the summary."""
import json

import pytest
import torch
from mmengine.config import Config

from skipconv_det import SkipConv2d
from skipconv_det.apis.ablation import (CLS_VARIANTS, DET_VARIANTS, ClsStudy, Step, Variant, _run_key,
                                        _variant_record, default_variants, format_summary, parse_variant,
                                        resolve_variants, run_study, summarize, variant_model_cfg)
from skipconv_det.apis.cls_demo import CLS_STUDY_MODELS
from skipconv_det.cli.ablation import parse_ablation_args, run_ablation
from skipconv_det.models.skip_setting import SkipSetting

DENSE_DEMO = 'configs/demo/faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'


def test_parse_variant():
    assert parse_variant('dense') == ('dense', None)
    name, variant = parse_variant('mine=backbone:checkerboard/zero;neck,rpn_head:grid+shift:keep=*fpn_convs*')
    assert name == 'mine'
    assert variant == Variant((Step(('backbone', ), SkipSetting('checkerboard', False, 'zero')),
                               Step(('neck', 'rpn_head'), SkipSetting('grid', True, 'linear'), ('*fpn_convs*', ))))
    assert parse_variant('pw=backbone:checkerboard:kernel=1')[1].steps[0].kernel_sizes == (1, )
    assert parse_variant('planned=work_dirs/plan/x.py') == ('planned', Variant(config='work_dirs/plan/x.py'))
    for bad in ('x=backbone', 'x=backbone:diagonal', 'x=backbone:grid/bilinear', 'x=:checkerboard',
                'x=backbone:checkerboard:only=a'):
        with pytest.raises(ValueError):
            parse_variant(bad)
    with pytest.raises(SystemExit):  # the tool reports it as a usage error
        parse_ablation_args(['--det-variants', 'x=backbone:diagonal'])


def test_variant_builds_the_placement_it_names(mmdet_scope):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(DENSE_DEMO)
    backbone, heads = DET_VARIANTS['backbone zero, neck+rpn linear'].steps
    steps = (backbone._replace(keep_dense=('backbone.conv1', )), heads)
    torch.manual_seed(0)
    model = MODELS.build(variant_model_cfg(cfg.model, steps))
    torch.manual_seed(0)
    dense = MODELS.build(cfg.model)
    fills = {(name.split('.')[0], m.fill) for name, m in model.named_modules() if isinstance(m, SkipConv2d)}
    assert fills == {('backbone', 'zero'), ('neck', 'linear'), ('rpn_head', 'linear')}
    assert type(model.backbone.conv1) is torch.nn.Conv2d  # kept dense
    assert type(model.rpn_head.rpn_cls) is torch.nn.Conv2d  # prediction layers stay dense
    # Conversion happens before initialisation: the same seed gives the dense model's own weights.
    for (name, p), (_, q) in zip(model.state_dict().items(), dense.state_dict().items()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize('setting', ['checkerboard linear', 'checkerboard zero', 'grid+shift linear'])
def test_1x1_only_variant_leaves_mobilenets_depthwise_convs_dense(setting):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    name = f'{setting}, 1x1 convs only'
    cfg = Config.fromfile(CLS_STUDY_MODELS['mobilenetv2'])
    model = MODELS.build(variant_model_cfg(cfg.model, CLS_VARIANTS[name].steps))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    skipped = [m for m in convs if isinstance(m, SkipConv2d)]
    assert skipped and all(m.kernel_size == (1, 1) for m in skipped)
    assert all(m.kernel_size == (3, 3) for m in convs if not isinstance(m, SkipConv2d))
    expected = CLS_VARIANTS[setting].steps[0].setting
    assert {(m.skip_pattern, m.shift_channels, m.fill) for m in skipped} == {tuple(expected)}
    assert name in default_variants('cls', 'mobilenetv2')
    assert name not in default_variants('cls', 'resnet20')


def test_config_variant_is_identified_by_its_content(tmp_path):
    config = tmp_path / 'planned.py'
    config.write_text("_base_ = 'x.py'\n")
    first = _variant_record(Variant(config=str(config)))
    config.write_text("_base_ = 'y.py'\n")
    assert _variant_record(Variant(config=str(config))) != first  # a re-planned config is not the old runs'


def test_summary_mean_std_and_ratios():
    runs = [dict(task='cls', variant=v, seed=s, metrics={'top1': top1}, flops=flops, latency_ms=ms)
            for v, s, top1, flops, ms in [('dense', 0, 90.0, 100, 10.0), ('dense', 1, 92.0, 100, 12.0),
                                          ('v', 1, 91.0, 50, 6.0), ('v', 0, 88.0, 50, 8.0)]]
    dense, v = summarize(runs, 'cls', ['dense', 'v', 'missing'])
    assert v['variant'] == 'v' and v['seeds'] == [0, 1] and v['top1']['values'] == [88.0, 91.0]
    assert v['top1']['mean'] == pytest.approx(89.5) and v['top1']['std'] == pytest.approx(2.1213, abs=1e-4)
    assert v['flops_ratio'] == pytest.approx(0.5) and v['latency_ms_ratio'] == pytest.approx((0.8 + 0.5) / 2)
    assert dense['flops_ratio'] == 1.0
    table = format_summary([dense, v], 'cls')
    assert '| v | 2 | 89.5 ± 2.1 | 0.500 | 0.650 |' in table and '- v: top1 per seed 88.0, 91.0' in table


def test_no_train_summarises_the_saved_runs_only(tmp_path):
    study = ClsStudy(str(tmp_path / 'data'))
    settings = study._asdict()
    record = _variant_record(Variant())
    runs = [dict(key=_run_key('cls', 'resnet20', 'dense', seed, dict(settings, **record)), task='cls',
                 model='resnet20', variant='dense', seed=seed, metrics={'top1': top1}, flops=100, latency_ms=10.0)
            for seed, top1 in ((0, 90.0), (1, 94.0))]
    # A run of other settings (another data set size) is not this study's.
    runs.append(dict(runs[0], key=_run_key('cls', 'resnet20', 'dense', 0, dict(settings, num_train=5, **record)),
                     metrics={'top1': 10.0}))
    json_path = tmp_path / 'ablation.json'
    json_path.write_text(json.dumps(dict(runs=runs)))
    result = run_ablation(['--tasks', 'cls', '--cls-variants', 'dense', 'checkerboard linear', '--seeds', '0', '1',
                           '--work-dir', str(tmp_path), '--cls-data-root', study.data_root, '--no-train'])
    (dense, ) = result['summary']['cls/resnet20']  # the variant without runs is left out, not trained
    assert dense['top1']['mean'] == 92.0 and not (tmp_path / 'data').exists() and len(result['runs']) == 3
    assert (tmp_path / 'ablation.png').exists()


def test_merge_adds_another_files_runs_once(tmp_path):
    study = ClsStudy(str(tmp_path / 'data'))
    record = _variant_record(Variant())

    def run(seed, top1):
        return dict(key=_run_key('cls', 'resnet20', 'dense', seed, dict(study._asdict(), **record)), task='cls',
                    model='resnet20', variant='dense', seed=seed, metrics={'top1': top1}, flops=100, latency_ms=10.0)

    ours, theirs = tmp_path / 'ours.json', tmp_path / 'theirs.json'
    ours.write_text(json.dumps(dict(runs=[run(0, 90.0)])))
    theirs.write_text(json.dumps(dict(runs=[run(0, 50.0), run(1, 94.0)])))  # seed 0 is ours already
    argv = ['--tasks', 'cls', '--cls-variants', 'dense', '--seeds', '0', '1', '--work-dir', str(tmp_path),
            '--json', str(ours), '--cls-data-root', study.data_root, '--no-train', '--merge', str(theirs)]
    result = run_ablation(argv)
    assert [r['metrics']['top1'] for r in result['runs']] == [90.0, 94.0]
    assert result['summary']['cls/resnet20'][0]['top1']['mean'] == 92.0
    assert len(json.loads(ours.read_text())['runs']) == 2  # written back: merging again adds nothing
    assert len(run_ablation(argv)['runs']) == 2


def test_run_study_rejects_unknown_parts_presets_and_difficulties(tmp_path):
    with pytest.raises(ValueError, match='Unknown study part'):
        run_study({('cls', 'alexnet'): {}}, [0], str(tmp_path), train=False)
    with pytest.raises(ValueError, match='Unknown study part'):
        run_study({('seg', 'x'): {}}, [0], str(tmp_path), train=False)
    with pytest.raises(ValueError, match='Unknown difficulty'):
        run_study({('cls', 'resnet20'): {}}, [0], str(tmp_path), cls=ClsStudy(difficulty='extreme'), train=False)
    with pytest.raises(ValueError, match='Unknown det variant'):
        resolve_variants('det', [('nope', None)])


@pytest.mark.parametrize('model', sorted(CLS_STUDY_MODELS))
def test_stem_dense_variant_keeps_each_familys_first_conv(model):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(CLS_STUDY_MODELS[model])
    built = MODELS.build(variant_model_cfg(cfg.model, CLS_VARIANTS['grid+shift linear, stem dense'].steps))
    convs = [m for m in built.modules() if isinstance(m, torch.nn.Conv2d)]
    assert type(convs[0]) is torch.nn.Conv2d and all(isinstance(m, SkipConv2d) for m in convs[1:])
