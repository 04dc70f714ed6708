# The study's data and schedule of synthetic-cifar10-hard_1xb64-24e.py over 48 epochs. On 24 epochs a dense VGG-16 or
# MobileNetV2 may still sit on the plateau where it has learnt the shapes' outlines but not the stripes' orientation
# when the cosine rate runs out; twice the epochs give every run the time to leave it.
_base_ = './synthetic-cifar10-hard_1xb64-24e.py'

# A base file's expressions are not re-evaluated in its children, so the schedule is restated with its max_epochs.
max_epochs = 48
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
