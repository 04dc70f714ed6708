# The uniform checkerboard SkipConv demo detector (fill='linear' in the backbone, the FPN and the RPN conv), trained
# as a dense model for its first epoch of 6 (DenseWarmupHook) and as SkipConv from then on.
_base_ = './faster-rcnn_r18-w16-scratch-skipconv_fpn_1xb8-6e_synthetic-coco.py'

custom_hooks = [dict(type='DenseWarmupHook', epochs=1)]
