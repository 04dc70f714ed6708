from .synthetic_coco import CLASSES as SYNTHETIC_COCO_CLASSES
from .synthetic_coco import generate_synthetic_coco, validate_coco

__all__ = ['SYNTHETIC_COCO_CLASSES', 'generate_synthetic_coco', 'validate_coco']
