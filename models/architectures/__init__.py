"""Architectures of the model zoo, one module per family. Registered in ``models.zoo._MODULES``."""
