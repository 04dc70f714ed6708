_base_ = './faster-rcnn_r50-skipconv_fpn_1x_coco.py'
# Grid keeps 1/4 of the positions. Channels are shifted: without that the same 3/4 of the positions are zero in every
# channel of every layer, and training collapses (docs/operator.md, shift_channels).
skipconv = dict(skip_pattern='grid', shift_channels=True)
model = dict(backbone=dict(conv_cfg=skipconv), neck=dict(conv_cfg=skipconv), rpn_head=dict(conv_cfg=skipconv))
