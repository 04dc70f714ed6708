# ResNet-20 of the classification study with checkerboard 'linear' SkipConv on every backbone conv (the study's
# 'checkerboard linear'), trained as a dense model for its first 6 of 24 epochs (DenseWarmupHook) and as SkipConv
# from then on. Inference FLOPs are those of uniform checkerboard; training FLOPs are (6 + 18 * r) / 24 of dense
# for that model's ratio r.
_base_ = 'resnet20_1xb64-24e_synthetic-cifar10.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='SkipConvModel',
    model={{_base_.model}},
    skip_pattern='checkerboard',
    shift_channels=False,
    fill='linear',
    scope=['backbone'])
custom_hooks = [dict(type='ChannelsLastHook'), dict(type='DenseWarmupHook', epochs=6)]
