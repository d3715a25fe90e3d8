"""Metric sources: each module reads one source and returns a fragment of the sample dict, or nothing."""
