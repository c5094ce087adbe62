"""`python -m harness.studies.ablate`: the ablations study's command under the name the
docs, nox and results folders use (`harness.studies.ablations.cli`)."""
