"""crmsync pusher."""
