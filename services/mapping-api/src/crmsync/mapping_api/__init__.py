"""crmsync mapping API."""
