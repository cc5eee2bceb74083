"""Tools that drive the project from outside (not shipped in the wheel)."""
