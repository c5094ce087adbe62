"""What every stage shares: the one frozen config, atomic file writes, CLI error handling."""
