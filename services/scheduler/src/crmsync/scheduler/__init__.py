"""crmsync scheduler."""
