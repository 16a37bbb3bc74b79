"""Install the ``harl`` package: ``pip install -e .[mpe,mamujoco,smax,ray,test]``."""

from setuptools import find_packages, setup

EXTRAS = {
    "mpe": ["mpe2==1.1.1", "pettingzoo>=1.25,<1.28"],
    "mamujoco": ["gymnasium-robotics==1.4.2", "mujoco>=3.1"],
    "smax": ["jaxmarl==0.2.0"],
    # StarCraft II itself (4.10) and the maps are separate downloads: see docs/STARCRAFT.md
    "smac": ["smac @ git+https://github.com/oxwhirl/smac.git"],
    "smacv2": ["smacv2 @ git+https://github.com/oxwhirl/smacv2.git"],
    # gfootball imports six without declaring it
    "football": ["gfootball==2.10.2", "six"],
    # examples/reproduce.py --ray: each run of a sweep as a Ray task
    "ray": ["ray>=2.9"],
    # ruff pinned: its formatting changes between versions
    "test": ["pytest>=8", "pytest-timeout>=2.3", "ruff==0.17.6"],
}
EXTRAS["all"] = sorted({req for name in ("mpe", "mamujoco", "smax", "ray", "test") for req in EXTRAS[name]})

setup(
    name="harl",
    version="0.1.0",
    description="HARL-compatible multi-agent RL baselines and HAQO (diffusion actors)",
    packages=find_packages(include=["harl", "harl.*"]),
    package_data={"harl": ["configs/*.yaml", "configs/algos_cfgs/*.yaml", "configs/envs_cfgs/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        # No upper cap: a user's newer or CUDA torch stays. The install commands (README,
        # .ci/run) install torch==2.13.0 first, the CPU build cached on the project machines.
        "torch>=2.1",
        "numpy>=1.24",
        "gymnasium>=1.0",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
    ],
    extras_require=EXTRAS,
)
