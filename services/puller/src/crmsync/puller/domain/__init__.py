"""The puller's values: what its use cases and its adapters hand each other (pure)."""
