# Copyright (c) skipconv_det contributors. Licensed under the Apache License 2.0.
"""Peak memory of a call, on CUDA and on the CPU, measured the same way: the most tensor memory it held at once
above what was allocated when it started.

CUDA has the allocator's peak counter (what mmdet's logger reports as ``memory`` and its model zoo as "Mem
(GB)"). The CPU allocator keeps no such counter, so there the allocations are read from ``torch.profiler`` with
``profile_memory=True``: it records every allocation and free of torch's CPU allocator (size, negative on free)
with a timestamp, and the peak is the maximum of their running sum.
"""
from itertools import accumulate
from typing import Any, Callable, Union

import torch
from torch.profiler import ProfilerActivity, profile, record_function

_MEASURED = 'peak_memory: measured call'


def peak_memory(fn: Callable[[], Any], device: Union[str, torch.device] = 'cpu', warmup: int = 1) -> int:
    """Bytes of tensor memory ``fn()`` holds at its peak, above what was allocated before the call.

    What the call allocates and frees again counts (activations, gradients, workspaces, the outputs it drops);
    memory live before it (weights, inputs) does not. A training step that frees its gradients at the end, as
    mmengine's ``OptimWrapper.update_params`` does, thus counts activations, gradients and new optimizer state.

    - CUDA: ``torch.cuda.max_memory_allocated`` minus ``torch.cuda.memory_allocated`` at the start, after
      ``torch.cuda.reset_peak_memory_stats``. The caching allocator's reserved memory (``nvidia-smi``) is larger.
    - CPU: the running sum of torch.profiler's ``[memory]`` events (every allocation and free through torch's CPU
      allocator, in time order) during the measured call, at its maximum. The warm-up calls run under the profiler
      too, so what the measured call frees of theirs is seen; the free of a block older than the profiler is not
      (torch warns once: "Memory block of unknown size was allocated before the profiling started"), which can
      only read high. Memory that bypasses torch's allocator (oneDNN's own scratchpads, Python objects) is not
      seen, and the process's resident size (RSS) is larger.

    Args:
        fn (callable): The work, called without arguments.
        device (str | torch.device): Where ``fn`` allocates. Default: 'cpu'.
        warmup (int): Calls before the measured one (lazy initialisation and first-call caches would otherwise
            count). Default: 1.

    Returns:
        int: Peak bytes above the start (0 if the call allocates nothing it keeps live at once).
    """
    device = torch.device(device)
    if device.type == 'cuda':
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    if device.type != 'cpu':
        raise ValueError(f'peak_memory measures CPU and CUDA calls, not {device.type!r} ones.')
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        # Warm-up under the profiler too: the free of a block allocated before profiling is not reported.
        for _ in range(warmup):
            fn()
        with record_function(_MEASURED):
            fn()
    events = prof.profiler.kineto_results.events()
    measured = next(e for e in events if e.name() == _MEASURED)
    # The raw events, each with its time: prof.events() folds the allocations made inside an op into the op's
    # totals.
    allocations = sorted((e.start_ns(), e.nbytes()) for e in events
                         if e.name() == '[memory]' and e.device_type() == torch.autograd.DeviceType.CPU
                         and measured.start_ns() <= e.start_ns() <= measured.end_ns())
    return max(accumulate((nbytes for _, nbytes in allocations), initial=0))
