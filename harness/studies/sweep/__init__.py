"""The stage-boundary sweep: an Optuna study over TPDiff's jump points (`run`), where its
trials live and how workers share them (`storage`), its outputs (`report`) and its command
(`cli`, `python -m harness.sweep`)."""
