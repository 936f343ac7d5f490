"""The classic designs visionq is compared against, run by the benchmark itself."""
