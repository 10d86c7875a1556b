"""crmsync puller."""
