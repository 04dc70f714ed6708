"""peak_memory: the most a call holds at once above what was allocated before it, on the CPU (torch.profiler's
allocation events) and on CUDA (the allocator's peak counter)."""
import os

import pytest
import torch

from skipconv_det.analysis.memory import peak_memory

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
if os.environ.get('TORCH_DEVICE'):
    DEVICES = [os.environ['TORCH_DEVICE']]

MIB = 1 << 20


@pytest.mark.parametrize('device', DEVICES)
def test_a_tensor_allocated_and_freed_counts(device):
    def fn():
        x = torch.empty(4 * MIB, dtype=torch.uint8, device=device)
        del x
        return torch.empty(MIB, dtype=torch.uint8, device=device)  # after the free: the peak stays 4 MiB

    assert 4 * MIB <= peak_memory(fn, device) < 4 * MIB + 64 * 1024


@pytest.mark.parametrize('device', DEVICES)
def test_memory_live_before_the_call_does_not_count(device):
    before = torch.ones(2 * MIB, device=device)
    assert peak_memory(lambda: before.sum(), device) < 64 * 1024
    assert peak_memory(lambda: None, device) == 0


@pytest.mark.parametrize('device', DEVICES)
def test_what_a_call_frees_of_the_previous_call_is_seen_freed(device):
    """A call that replaces a cached tensor holds two at its peak, not an ever-growing count."""
    cache = {}

    def fn():
        cache['x'] = torch.empty(2 * MIB, dtype=torch.uint8, device=device)

    assert 2 * MIB <= peak_memory(fn, device, warmup=3) < 4 * MIB + 64 * 1024


@pytest.mark.parametrize('device', DEVICES)
def test_conv_peaks_at_least_at_its_output_and_training_at_more(device):
    x = torch.randn(1, 16, 64, 64, device=device)
    conv = torch.nn.Conv2d(16, 32, 3, padding=1).to(device)
    output_bytes = 32 * 64 * 64 * 4
    with torch.no_grad():
        inference = peak_memory(lambda: conv(x), device)
    x.requires_grad_()

    def train():
        conv(x).sum().backward()
        x.grad = conv.weight.grad = conv.bias.grad = None

    assert output_bytes <= inference < 4 * output_bytes
    assert train() is None and peak_memory(train, device) >= inference + x.numel() * 4  # + the input gradient


def test_other_devices_are_refused():
    with pytest.raises(ValueError, match='CPU and CUDA'):
        peak_memory(lambda: None, 'meta')
