"""What every experiment shares: :mod:`experiments._lib.config` (config presets on the command
line, run directories, result files), :mod:`experiments._lib.train` (the training loop),
:mod:`experiments._lib.rundir` (the run directories' lock, checks and errors) and
:mod:`experiments._lib.host` (glibc malloc settings for XLA on a CPU host)."""
