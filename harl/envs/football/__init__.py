"""Google Research Football (``--env football``)."""

from harl.envs.base import EnvSpec

SPEC = EnvSpec(
    adapter="harl.envs.football.football_env:FootballEnv",
    task_name=lambda a: a["env_name"],
    extra="football",
    provides=("gfootball",),
    install_command=(
        "bash scripts/install_football.sh (builds gfootball from source, about 15 minutes; "
        "installs its Debian build packages with apt-get, so run it as root or install those first)"
    ),
)
