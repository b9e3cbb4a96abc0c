"""Data: robust image I/O (:mod:`.io`), datasets, degradations, transforms, raw helpers."""
