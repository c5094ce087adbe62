"""One run, end to end: build (config -> Built), train, sample, evaluate, provenance."""
