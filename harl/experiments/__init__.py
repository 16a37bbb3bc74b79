"""Paper reproduction: experiment files, resumable sweeps (local pool or Ray) and the reports."""
