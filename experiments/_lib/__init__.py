"""What every experiment shares: :mod:`experiments._lib.config` (config presets on the command
line, run directories, result files) and :mod:`experiments._lib.train` (the training loop)."""
