"""Chaos scenarios and their building blocks, against real Redis and real processes."""
