_base_ = './faster-rcnn_r50-skipconv_fpn_1x_coco.py'
# Checkerboard with shifted channels: each half of the output channels computes the other half of the positions,
# so every position stays alive in some channel (same cost as the plain checkerboard).
skipconv = dict(shift_channels=True)
model = dict(backbone=dict(conv_cfg=skipconv), neck=dict(conv_cfg=skipconv), rpn_head=dict(conv_cfg=skipconv))
