"""crmsync benchmarks: each module prints its figures, the machine, and a baseline run beside it."""
