"""End-to-end entry points (imports mmdet through the configs they run)."""
from .demo import DEMO_CONFIGS, demo_config, format_table, train_and_measure

__all__ = ['DEMO_CONFIGS', 'demo_config', 'format_table', 'train_and_measure']
