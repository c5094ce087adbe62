"""The named ablations study: every variant of `ablations.ABLATIONS` trained and scored
(`run`), its report drawn from the folder's files (`report`), the commands (`cli`) and the
same ablations as GPU commands with their expected cost (`commands`)."""
