"""Multi-Agent Particle Environments (``mpe2``), with HARL's scenario names accepted."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.pettingzoo_mpe.pettingzoo_mpe_env:PettingZooMPEEnv",
    task_name=lambda a: f"{a['scenario']}-{'continuous' if a['continuous_actions'] else 'discrete'}",
    extra="mpe",
    provides=("mpe2", "pettingzoo"),
)
