"""Test and development support that needs a source checkout: the local control plane.

Nothing here is imported by the operator at run time.
"""
