"""SMACv2 (oxwhirl's ``smacv2`` capability wrapper, StarCraft II) behind HARL's env contract."""
