# SkipConv (checkerboard) trained from scratch, the paper's setting: the dense from-scratch baseline with SkipConv
# in the backbone, the FPN and the RPN head's shared conv (the box head's 4 convs stay dense: they predict). Zeros at
# the skipped positions of the backbone (a norm layer follows every conv), the mean of the computed neighbours
# ('linear') in the FPN and RPN conv, whose maps the heads read.
_base_ = './faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py'
custom_imports = dict(imports=['skipconv_det', 'skipconv_det.models.dense_heads'], allow_failed_imports=False)

skipconv = dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False, fill='linear')
model = dict(
    backbone=dict(conv_cfg=dict(skipconv, fill='zero')),
    neck=dict(conv_cfg=skipconv),
    rpn_head=dict(type='ConvCfgRPNHead', conv_cfg=skipconv))
