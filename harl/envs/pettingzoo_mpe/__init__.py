"""Multi-Agent Particle Environments (``mpe2``), with HARL's scenario names accepted."""
