"""visionq: self-hostable image inference (faces, COCO objects, ImageNet labels) over REST."""

__version__ = "0.1.0"
