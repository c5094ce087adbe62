"""The CPU recipe study: which settings make the CPU-scale models learn (issue 17)."""
