"""BatchNorm statistics for the tests that fold BN: far from the identity, so that a misplaced shift shows."""
import torch
import torch.nn as nn


def randomise_bn(model: nn.Module) -> nn.Module:
    """Every BN of ``model`` with random statistics and affine (a fixed seed); the model in eval."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=gen))
    model.eval()
    return model
