# The CPU-sized MobileNetV2 of mobilenet-v2-w0.5_1xb64-24e_synthetic-cifar10.py on the 48-epoch schedule
# (tools/ablation.py --tasks cls --cls-models mobilenetv2-48e): on 24 epochs a dense run may end on the loss plateau.
_base_ = ['../classification/_base_/models/mobilenet-v2_cifar.py', './_base_/synthetic-cifar10-hard_1xb64-48e.py']

model = dict(backbone=dict(widen_factor=0.5))
