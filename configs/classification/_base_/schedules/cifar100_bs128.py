# CIFAR-100 from scratch, as mmpretrain's resnet/resnet50_8xb16_cifar100.py (the Wide-ResNet schedule,
# Zagoruyko & Komodakis 2016): SGD lr 0.1, momentum 0.9, weight decay 5e-4, 200 epochs, lr x0.2 at 60/120/160.
_base_ = 'mmpretrain::_base_/schedules/cifar10_bs128.py'

optim_wrapper = dict(optimizer=dict(weight_decay=0.0005))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[60, 120, 160], gamma=0.2)
