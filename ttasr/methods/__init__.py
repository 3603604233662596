"""The adaptation methods, one folder each; :mod:`.registry` lists them."""
