"""Built-in occupation game of the paper's Figs. 1 and 2 (no extra packages)."""
