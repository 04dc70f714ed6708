from .complexity import dummy_det_inputs, get_model_complexity, measure_latencies, measure_latency, model_latency

__all__ = ['dummy_det_inputs', 'get_model_complexity', 'measure_latencies', 'measure_latency', 'model_latency']
