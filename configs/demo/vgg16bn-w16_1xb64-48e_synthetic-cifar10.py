# The CPU-sized VGG-16-BN of vgg16bn-w16_1xb64-24e_synthetic-cifar10.py on a 48-epoch schedule
# (tools/ablation.py --tasks cls --cls-models vgg16bn-48e). On 24 epochs the dense model itself may still sit on the
# plateau where it has learnt the shapes' outlines but not the stripes' orientation when the cosine rate runs out;
# twice the epochs give every run the time to leave it.
_base_ = './vgg16bn-w16_1xb64-24e_synthetic-cifar10.py'

max_epochs = 48
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs))
