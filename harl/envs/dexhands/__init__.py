"""Bi-DexterousHands on NVIDIA Isaac Gym (``--env dexhands``)."""
