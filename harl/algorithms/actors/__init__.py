"""On-policy actors, by HARL's algorithm names."""
from harl.algorithms.actors.haa2c import HAA2C
from harl.algorithms.actors.happo import HAPPO
from harl.algorithms.actors.hatrpo import HATRPO
from harl.algorithms.actors.mappo import MAPPO

ALGO_REGISTRY = {"happo": HAPPO, "hatrpo": HATRPO, "haa2c": HAA2C, "mappo": MAPPO}
