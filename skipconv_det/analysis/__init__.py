from .complexity import get_model_complexity, measure_latencies, measure_latency, model_latency
from .dummy_data import dummy_batch

__all__ = ['dummy_batch', 'get_model_complexity', 'measure_latencies', 'measure_latency', 'model_latency']
