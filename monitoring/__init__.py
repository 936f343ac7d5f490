"""visionq."""
