# SkipConv twin of the demo's dense baseline: checkerboard SkipConv in the backbone, the FPN and the RPN head's shared
# 3x3 conv (half of every conv's output positions computed); prediction layers and the box head stay dense, and
# everything else (data, schedule, seed) is the baseline's. Skipped positions hold zeros in the backbone (a BN follows
# every conv there) and the mean of their computed neighbours ('linear') in the FPN and the RPN conv, whose maps the
# heads and RoIAlign read: the placement that keeps the dense model's mAP in the accuracy study (README).
_base_ = './faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'
# skipconv_det registers the 'SkipConv' conv type; its dense_heads module registers ConvCfgRPNHead (imports mmdet).
custom_imports = dict(imports=['skipconv_det', 'skipconv_det.models.dense_heads'], allow_failed_imports=False)

skipconv = dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False, fill='linear')
model = dict(
    backbone=dict(conv_cfg=dict(skipconv, fill='zero')),
    neck=dict(conv_cfg=skipconv),
    rpn_head=dict(type='ConvCfgRPNHead', conv_cfg=skipconv))
