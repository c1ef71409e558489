"""Frames in and results out: sources, outputs (video, maps, report, plots, overlay) and the pipeline."""
