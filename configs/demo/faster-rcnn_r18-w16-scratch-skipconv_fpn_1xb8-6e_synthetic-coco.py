# SkipConv twin of the demo's dense baseline: checkerboard SkipConv in the backbone, the FPN and the RPN head's shared
# 3x3 conv (half of every conv's output positions computed); prediction layers and the box head stay dense;
# everything else (data, schedule, seed) is the baseline's.
# Skipped positions hold the mean of their computed neighbours (fill='linear') in every SkipConv layer: the fill
# that keeps the dense model's mAP in the accuracy study (README); the -zero config is the literal variant.
_base_ = './faster-rcnn_r18-w16-scratch_fpn_1xb8-6e_synthetic-coco.py'
# skipconv_det registers the 'SkipConv' conv type and ConvCfgRPNHead.
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

skipconv = dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False, fill='linear')
model = dict(
    backbone=dict(conv_cfg=skipconv),
    neck=dict(conv_cfg=skipconv),
    rpn_head=dict(type='ConvCfgRPNHead', conv_cfg=skipconv))
