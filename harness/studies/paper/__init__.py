"""The paper suite: matched vanilla / TPDiff runs, their scores and cost tables (`run`), the
report drawn from those files (`report`), and the commands that reach them (`cli`)."""
