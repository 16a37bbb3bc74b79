"""JaxMARL's SMAX (StarCraft-like battles in JAX) with SMAC's map names and action layout."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.smax.smax_env:SMAXEnv",
    task_name=lambda a: a["map_name"],
    extra="smax",
    provides=("jaxmarl", "jax", "jaxlib", "flax", "chex"),
)
