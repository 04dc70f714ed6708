# The classification study's data and schedule, sized for a CPU: mmpretrain's CIFAR-10 pipeline (random 32x32 crop
# of the 4-px padded image + horizontal flip) and optimizer (SGD lr 0.1, momentum 0.9, weight decay 1e-4) as in
# ../../classification/, on the generated hard CIFAR-10-format set, 24 epochs of batch 64 instead of 200 of 128.
# Write the set first: python -m skipconv_det.datasets.synthetic_cls --out data/synthetic_cifar10_hard
_base_ = [
    'mmpretrain::_base_/datasets/cifar10_bs16.py',
    'mmpretrain::_base_/schedules/cifar10_bs128.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

data_root = 'data/synthetic_cifar10_hard/'
# Generated files are not the official release: the Unverified loader skips the md5 check (see unverified_cifar).
dataset = dict(type='UnverifiedCIFAR10', data_root=data_root, download=False)
train_dataloader = dict(batch_size=64, num_workers=0, persistent_workers=False, dataset=dataset)
val_dataloader = dict(batch_size=64, num_workers=0, persistent_workers=False, dataset=dataset)
test_dataloader = val_dataloader

# One warm-up epoch, then a cosine decay to zero: the 200-epoch step schedule cut to 24 epochs drops the rate
# before a network from scratch has left chance level on this set.
max_epochs = 24
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs), logger=dict(interval=10))
# channels_last is the faster layout on CPU for these small maps, dense and SkipConv alike.
custom_hooks = [dict(type='ChannelsLastHook')]
