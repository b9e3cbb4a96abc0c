"""Model architectures, one file each; they register in ``ppRestore.registry.MODELS``.

Nothing is imported here on purpose: the registry imports the model modules lazily.
"""
