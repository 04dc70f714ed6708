# The literal SkipConv of the paper: skipped outputs are zeros in every SkipConv layer (backbone, FPN, RPN conv).
# Cheapest to assemble, but the maps that the heads read then have zeros at half their positions, which costs
# localisation (see the accuracy study in the README); faster-rcnn_r50-skipconv_fpn_1x_coco.py fills them.
_base_ = './faster-rcnn_r50-skipconv_fpn_1x_coco.py'

skipconv = dict(fill='zero')
model = dict(backbone=dict(conv_cfg=skipconv), neck=dict(conv_cfg=skipconv), rpn_head=dict(conv_cfg=skipconv))
