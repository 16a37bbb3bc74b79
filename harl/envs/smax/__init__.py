"""JaxMARL's SMAX (StarCraft-like battles in JAX) with SMAC's map names and action layout."""
