"""Multi-Agent MuJoCo (``gymnasium-robotics`` mamujoco_v1), with HARL's scenario names accepted."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.mamujoco.mamujoco_env:MAMuJoCoEnv",
    task_name=lambda a: f"{a['scenario']}-{a['agent_conf']}",
    extra="mamujoco",
    provides=("gymnasium_robotics", "mujoco"),
)
