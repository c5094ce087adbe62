"""Jobs made of many runs: suites, the paper comparison, sweeps, ablations, the recipe study,
and the reports and plots drawn from their files."""
