"""Entry point: compose the Hydra config, convert it to typed dataclasses, and train.

    python -m rtrain                               # tiny embedded default, CPU, ~1 minute
    python -m rtrain +experiment=sky_t1 --cfg job  # print the Sky-T1 recipe (offline)
    torchrun --nproc_per_node=2 -m rtrain          # two processes, gloo on CPU / nccl on GPU

``DictConfig`` stops here: :func:`rtrain.config.to_typed` turns it into :class:`rtrain.config.RTrainConfig`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from rtrain.config import CONFIG_DIR, register_configs, to_typed
from rtrain.errors import RTrainError

register_configs()

@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from rtrain.trainer import train  # heavy imports after Hydra has handled --help / --cfg

    try:
        train(to_typed(cfg))
    except RTrainError as e:  # a problem the user can fix: the message, not a traceback
        print(f"rtrain: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
