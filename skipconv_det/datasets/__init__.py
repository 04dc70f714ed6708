from .checks import DatasetError, check_coco_annotations, check_datasets
from .synthetic_coco import CLASSES as SYNTHETIC_COCO_CLASSES
from .synthetic_coco import generate_synthetic_coco, validate_coco

__all__ = [
    'DatasetError', 'SYNTHETIC_COCO_CLASSES', 'check_coco_annotations', 'check_datasets', 'generate_synthetic_coco',
    'validate_coco'
]
