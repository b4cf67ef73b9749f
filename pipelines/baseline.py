"""DVC stage ``baseline``: see :mod:`releo.stages.baseline`."""

from releo.stages.baseline import main

if __name__ == "__main__":
    main()
