# The planned demo detector (tools/plan.py, 0.62x of the dense FLOPs; what `make demo` trains), trained as a dense
# model for its first 2 of 6 epochs (DenseWarmupHook) and with its planned patterns from then on.
_base_ = './faster-rcnn_r18-w16-scratch-skipconv-plan0.62_fpn_1xb8-6e_synthetic-coco.py'

custom_hooks = [dict(type='DenseWarmupHook', epochs=2)]
