# resnet56_8xb16_cifar10.py with every convolution a SkipConv computing a quarter of its output positions (grid).
# Each quarter of a conv's output channels keeps a different one of the four grid phases (shift_channels): an
# unshifted grid leaves the same positions dead through the whole network and does not train (docs/operator.md,
# shift_channels).
_base_ = './resnet56_8xb16_cifar10.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

model = dict(backbone=dict(conv_cfg=dict(type='SkipConv', skip_pattern='grid', shift_channels=True)))
