# SkipConv (checkerboard) in the ResNet-50 backbone, the FPN neck and the RPN head's shared 3x3 conv; everything
# else (ImageNet init, 1x schedule, lr 0.02 for 16 images) is the dense baseline's, so only the conv type differs.
# Skipped positions hold the mean of their computed neighbours (fill='linear') in every SkipConv layer: the fill
# that keeps the dense model's mAP in the accuracy study (README); the -zero config is the literal variant.
_base_ = './faster-rcnn_r50_fpn_1x_coco.py'
# skipconv_det registers the 'SkipConv' conv type and ConvCfgRPNHead.
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

# The ImageNet weights load unchanged (same state_dict); 1/2 of the output positions of every conv are computed.
skipconv = dict(type='SkipConv', skip_pattern='checkerboard', shift_channels=False, fill='linear')
model = dict(
    backbone=dict(conv_cfg=skipconv),
    neck=dict(conv_cfg=skipconv),
    # mmdet's RPNHead hard-codes its shared conv as nn.Conv2d; ConvCfgRPNHead builds it from conv_cfg.
    rpn_head=dict(type='ConvCfgRPNHead', conv_cfg=skipconv))
