"""Built-in heterogeneous cue-matching environment for tests (no extra packages)."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.toy.toy_env:ToyEnv",
    task_name=lambda a: "toy-mixed" if a["continuous_agent"] else "toy-discrete",
)
