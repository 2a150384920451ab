"""rtrain: a Hydra-configured research training framework for reasoning models.

Train the tiny embedded default on CPU with ``python -m rtrain``; reproduce Sky-T1 with
``python -m rtrain +experiment=sky_t1``. The training loop lives in :mod:`rtrain.trainer`.
"""

__version__ = "0.1.0"
