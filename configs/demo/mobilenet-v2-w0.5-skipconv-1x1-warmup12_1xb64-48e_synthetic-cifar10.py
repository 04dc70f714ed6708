# The 48-epoch MobileNetV2 of the classification study with checkerboard 'linear' SkipConv on its 1x1 convs,
# trained as a dense model for its first 12 of 48 epochs (DenseWarmupHook), a quarter of the schedule as in the
# 24-epoch warm-up config, and as SkipConv from then on.
_base_ = 'mobilenet-v2-w0.5_1xb64-48e_synthetic-cifar10.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='SkipConvModel',
    model={{_base_.model}},
    skip_pattern='checkerboard',
    shift_channels=False,
    fill='linear',
    kernel_sizes=[1])
custom_hooks = [dict(type='ChannelsLastHook'), dict(type='DenseWarmupHook', epochs=12)]
