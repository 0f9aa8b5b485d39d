"""Helpers of ``bench/suggestion_quality.py``: tasks, training, cache, finder runs, scoring."""
