# mobilenet-v2_8xb16_cifar10.py with every convolution a SkipConv computing half of its output positions (checkerboard).
_base_ = './mobilenet-v2_8xb16_cifar10.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

model = dict(backbone=dict(conv_cfg=dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False)))
