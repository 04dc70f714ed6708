# SkipConv (checkerboard) trained from scratch, the paper's setting: the dense from-scratch baseline with SkipConv
# in the backbone, the FPN and the RPN head's shared conv (the box head's 4 convs stay dense: they predict).
# Skipped positions hold the mean of their computed neighbours (fill='linear') in every SkipConv layer: the fill
# that keeps the dense model's mAP in the accuracy study (README); the -zero config is the literal variant.
_base_ = './faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

skipconv = dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False, fill='linear')
model = dict(
    backbone=dict(conv_cfg=skipconv),
    neck=dict(conv_cfg=skipconv),
    rpn_head=dict(type='ConvCfgRPNHead', conv_cfg=skipconv))
