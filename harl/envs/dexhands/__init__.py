"""Bi-DexterousHands on NVIDIA Isaac Gym (``--env dexhands``)."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.dexhands.dexhands_env:DexHandsEnv",
    task_name=lambda a: a["task"],
)
