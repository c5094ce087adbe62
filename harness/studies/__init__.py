"""Jobs made of many runs, one package per study (`paper`, `ablations`, `sweep`, `recipe`,
`checks`), each with `run.py` (train and score into a folder), `report.py` (draw only from
the files) and `cli.py`; `core` holds what they share and `suites` names them for
`python -m harness.run` and `python -m harness.report`."""
