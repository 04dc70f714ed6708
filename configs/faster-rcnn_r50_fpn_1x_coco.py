# Dense baseline: MMDetection's Faster R-CNN R-50-FPN 1x, unchanged. The SkipConv configs inherit from this file
# and change only the conv type, so every comparison is like with like.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
