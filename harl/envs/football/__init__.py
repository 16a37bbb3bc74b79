"""Google Research Football (``--env football``)."""
