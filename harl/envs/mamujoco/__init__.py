"""Multi-Agent MuJoCo (``gymnasium-robotics`` mamujoco_v1), with HARL's scenario names accepted."""
