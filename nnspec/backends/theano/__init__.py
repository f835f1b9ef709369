"""The Theano backend, on PyTensor (Theano's maintained successor): names ``theano`` and ``pytensor``.

Importing this package imports no engine; PyTensor is configured (see :mod:`.config`) and imported when
the backend is first used.
"""
