# SkipConv (checkerboard) in the ResNet-50 backbone, the FPN neck and the RPN head's shared 3x3 conv; everything
# else (ImageNet init, 1x schedule, lr 0.02 for 16 images) is the dense baseline's, so only the conv type differs.
# Prediction layers (rpn_cls/rpn_reg, the bbox head) stay dense. Skipped positions hold zeros in the backbone (BN
# follows every conv) and the mean of their computed neighbours ('linear') in the FPN and RPN conv, whose maps the
# heads read; faster-rcnn_r50-skipconv-zero_fpn_1x_coco.py is the literal variant with zeros everywhere.
_base_ = './faster-rcnn_r50_fpn_1x_coco.py'
# skipconv_det registers the 'SkipConv' conv type; its dense_heads module registers ConvCfgRPNHead (imports mmdet).
custom_imports = dict(imports=['skipconv_det', 'skipconv_det.models.dense_heads'], allow_failed_imports=False)

# The ImageNet weights load unchanged (same state_dict); 1/2 of the output positions of every conv are computed.
skipconv = dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False, fill='linear')
model = dict(
    backbone=dict(conv_cfg=dict(skipconv, fill='zero')),
    neck=dict(conv_cfg=skipconv),
    # mmdet's RPNHead hard-codes its shared conv as nn.Conv2d; ConvCfgRPNHead builds it from conv_cfg.
    rpn_head=dict(type='ConvCfgRPNHead', conv_cfg=skipconv))
