"""Format readers: one module per family of formats, each returning an `Extraction`.

python -m index.loaders some/folder     # reads every supported file through these readers
"""
