"""Model architectures, one file per architecture, registered in ``registry.MODELS``.

Import a model module (or look a name up in ``MODELS``) to use it; this package does
not import them eagerly so ``import ppRestore.models`` stays cheap and paddle-free.
"""
