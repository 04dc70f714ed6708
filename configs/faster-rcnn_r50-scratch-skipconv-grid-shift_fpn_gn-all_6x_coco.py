_base_ = './faster-rcnn_r50-scratch-skipconv_fpn_gn-all_6x_coco.py'
# Grid (1/4 of the positions) with shifted channels, which a grid needs (docs/operator.md, shift_channels).
skipconv = dict(skip_pattern='grid', shift_channels=True)
model = dict(backbone=dict(conv_cfg=skipconv), neck=dict(conv_cfg=skipconv), rpn_head=dict(conv_cfg=skipconv))
