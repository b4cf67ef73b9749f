"""DVC stage ``calibrate``: see :mod:`releo.stages.calibrate`."""

from releo.stages.calibrate import main

if __name__ == "__main__":
    main()
