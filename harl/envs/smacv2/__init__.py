"""SMACv2 (oxwhirl's ``smacv2`` capability wrapper, StarCraft II) behind HARL's env contract."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.smacv2.smacv2_env:SMACv2Env",
    task_name=lambda a: a["map_name"],
)
