"""mmengine checkpoints load under torch's safe loader (weights_only=True) with skipconv_det's exact allowlist, and
anything outside the allowlist is still refused."""
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner
from torch.utils.data import Dataset

import skipconv_det  # noqa: F401  (registers the allowlist)
from skipconv_det.engine import checkpoint_safe_globals


class _Regressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x, y, mode='loss'):
        return dict(loss=((self.linear(x).squeeze(-1) - y)**2).mean())


class _Points(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(x=torch.full((2, ), float(i)), y=torch.tensor(float(i)))


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    """A checkpoint written by mmengine's Runner: message hub, optimizer and MultiStepLR state included."""
    work_dir = str(tmp_path_factory.mktemp('runner'))
    runner = Runner(
        model=_Regressor(),
        work_dir=work_dir,
        experiment_name='test_checkpoint_safe_globals',
        train_dataloader=dict(dataset=_Points(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)))
    runner.train()
    return os.path.join(work_dir, 'epoch_1.pth')


def test_torch_alone_refuses_mmengine_checkpoints(runner_checkpoint):
    """The premise: without the allowlist the safe loader rejects mmengine's own objects."""
    ours = checkpoint_safe_globals()
    kept = [g for g in torch.serialization.get_safe_globals() if g not in ours]
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
            torch.load(runner_checkpoint, weights_only=True)
    finally:
        torch.serialization.add_safe_globals(kept + ours)


def test_runner_checkpoint_loads_with_safe_loader(runner_checkpoint):
    ckpt = torch.load(runner_checkpoint, weights_only=True)
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == 4
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 4
    assert loss.statistics('min') <= loss.mean() <= loss.statistics('max')
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.floating)
    assert ckpt['param_schedulers'][0]['milestones'] == {1: 1}
    # mmengine's own loader (resume and load_from go through it) calls torch.load with the default.
    assert CheckpointLoader.load_checkpoint(runner_checkpoint, map_location='cpu').keys() == ckpt.keys()


class _Payload:
    """An object a checkpoint has no business carrying."""


class _Getattr:
    """Pickles as ``getattr(owner, name)``: how a crafted file reaches attributes through an allowed global."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


@pytest.mark.parametrize('payload,match', [
    (_Payload(), 'test_checkpoint._Payload'),
    (os.system, 'system'),
    (_Getattr(HistoryBuffer, '__init__'), r"Refusing getattr\(.*HistoryBuffer.*'__init__'\)"),
    (_Getattr(np.ndarray, '__class__'), r"Refusing getattr\(<class 'numpy.ndarray'>, '__class__'\)"),
])
def test_unexpected_pickled_objects_are_refused(runner_checkpoint, tmp_path, payload, match):
    ckpt = torch.load(runner_checkpoint, weights_only=True)
    ckpt['meta']['payload'] = payload
    path = tmp_path / 'tampered.pth'
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError, match=match):
        torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError, match=match):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
