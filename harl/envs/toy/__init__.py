"""Built-in heterogeneous cue-matching environment for tests (no extra packages)."""
