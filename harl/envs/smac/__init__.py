"""The StarCraft Multi-Agent Challenge (oxwhirl's ``smac``, StarCraft II) behind HARL's env contract."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.smac.smac_env:SMACEnv",
    task_name=lambda a: a["map_name"],
)
