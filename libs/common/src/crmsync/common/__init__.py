"""crmsync's shared library: what more than one service needs."""
