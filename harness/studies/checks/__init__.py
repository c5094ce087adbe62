"""The self-checks: the engine suite (every stage plan checked end to end against known
answers) and the cost suite (FLOPs, times and speedups per stage)."""
