"""End-to-end entry points (imports mmdet through the configs they run)."""
from .demo import DEMO_CONFIGS, build_demo_parser, format_table, run_demo, train_and_measure

__all__ = ['DEMO_CONFIGS', 'build_demo_parser', 'format_table', 'run_demo', 'train_and_measure']
