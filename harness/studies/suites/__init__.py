"""The named jobs: `registry` (suites by name, and which study's report a results folder
takes), `cli` (`python -m harness.run`) and `report` (`python -m harness.report`). The one
place that imports several studies."""
