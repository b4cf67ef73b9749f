"""DVC stage ``tune``: see :mod:`releo.stages.tune`."""

from releo.stages.tune import main

if __name__ == "__main__":
    main()
