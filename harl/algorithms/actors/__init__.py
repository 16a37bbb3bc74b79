"""Actors by HARL's algorithm names."""

from harl.algorithms.actors.haa2c import HAA2C
from harl.algorithms.actors.haddpg import HADDPG
from harl.algorithms.actors.happo import HAPPO
from harl.algorithms.actors.haqo import HAQO
from harl.algorithms.actors.hasac import HASAC
from harl.algorithms.actors.hatd3 import HATD3
from harl.algorithms.actors.hatrpo import HATRPO
from harl.algorithms.actors.maddpg import MADDPG
from harl.algorithms.actors.mappo import MAPPO
from harl.algorithms.actors.matd3 import MATD3

ALGO_REGISTRY = {
    "happo": HAPPO,
    "hatrpo": HATRPO,
    "haa2c": HAA2C,
    "mappo": MAPPO,
    "hasac": HASAC,
    "haddpg": HADDPG,
    "hatd3": HATD3,
    "maddpg": MADDPG,
    "matd3": MATD3,
    "haqo": HAQO,
}
