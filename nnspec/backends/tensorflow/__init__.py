"""The TensorFlow backend. Importing this package does not import TensorFlow; see :mod:`.backend`."""
