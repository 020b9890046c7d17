"""Shared internals: atomic file I/O, progress bars, argument checks, float64 scopes, standard
errors, PRNG keys, categorical draws. Nothing here is public; every folder may import it."""
