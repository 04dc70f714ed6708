# Dense from-scratch baseline: MMDetection's Faster R-CNN R-50-FPN trained from random init, unchanged. The
# SkipConv from-scratch configs inherit from this file and change only the conv type.
# Its choices (He et al., "Rethinking ImageNet Pre-training", ICCV 2019): no ImageNet init (init_cfg=None, nothing
# frozen), GroupNorm everywhere (per-image statistics: sound at 2 images per GPU, where BN's are too noisy to
# train from scratch, and unlike SyncBN it needs no CUDA), a 4conv1fc box head normalised the same way, no weight
# decay on norm layers, and a 6x schedule (73 epochs), since a model trained from scratch needs longer to catch up.
_base_ = 'mmdet::scratch/faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py'
