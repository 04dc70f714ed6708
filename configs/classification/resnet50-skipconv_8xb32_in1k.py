# ResNet-50 on ImageNet-1k from scratch with every convolution a SkipConv computing half of its output positions
# (checkerboard). The dense twin is mmpretrain's own resnet/resnet50_8xb32_in1k.py; data pipeline and schedule are its.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

model = dict(backbone=dict(conv_cfg=dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False)))
