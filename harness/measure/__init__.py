"""Cost accounting: FLOP counts (fvcore), the timing protocol, cost tables and the speed gate."""
