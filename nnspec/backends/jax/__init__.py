"""The JAX backend. Importing this package imports no JAX; the engine is imported on first use."""
