"""The StarCraft Multi-Agent Challenge (oxwhirl's ``smac``, StarCraft II) behind HARL's env contract."""
