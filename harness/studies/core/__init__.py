"""What every study shares: the scale table, the CPU recipe, the scoring protocol,
train-and-score, verdicts, plots, strict readers of a results folder and staged writing.
A study package imports this core and the layers below it, never another study."""
