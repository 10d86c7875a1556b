"""The emulator's API areas, one module each."""
