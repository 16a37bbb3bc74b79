"""Built-in occupation game of the paper's Figs. 1 and 2 (no extra packages)."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.occupation.occupation_env:OccupationEnv",
    task_name=lambda a: f"{a['n_agents']}agents-{a['n_targets']}targets",
)
