"""The engine-free half of nnspec: spec text -> checked, shape-inferred, frozen IR."""
