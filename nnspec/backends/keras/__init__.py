"""The Keras 3 backend. Importing this package imports no Keras; the engine is imported on first use."""
