# Dense baseline of `make demo`: a small Faster R-CNN trained from scratch on the synthetic shapes dataset
# (python -m skipconv_det.datasets.synthetic_coco), sized so that 6 epochs take a few minutes on 2 CPU cores and reach
# a bbox mAP well above 0.5. Its SkipConv twin inherits from this file and changes only the conv type.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['skipconv_det'], allow_failed_imports=False)

data_root = 'data/synthetic_coco/'
img_size = 128  # the generator's default --size
metainfo = dict(classes=('square', 'circle', 'triangle', 'cross'),
                palette=[(230, 60, 50), (60, 200, 80), (70, 110, 240), (240, 210, 50)])

# ResNet-18 at a quarter width (stages of 16/32/64/128 channels), random init, nothing frozen, BN in train mode:
# with 8 images of one size per batch its statistics are sound, and it trains from scratch faster than GN. Four
# high-contrast shape classes need little capacity; the time goes into localising boxes well.
model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(
        in_channels=32,
        feat_channels=32,
        # Objects are 15% to 45% of the image side (~16 to 60 px): anchors of 16..256 px (4 x strides 4..64).
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=128, num_classes=4)),
    # At most 4 objects per image: far fewer proposals and RoI samples than COCO's 1000 / 512 suffice.
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200), rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=100)))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
# One worker: decoding 128 px PNGs is cheap, and the training process needs the cores.
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# 6 epochs of 600 images (450 steps): SGD with a short warm-up and a per-step cosine decay, lr 0.04 for 8 images
# (twice mmdet's 0.02 per 16: from scratch with BN a higher rate converges faster, and it was stable here).
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=0.01, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True)
]
optim_wrapper = dict(optimizer=dict(lr=0.04))
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
