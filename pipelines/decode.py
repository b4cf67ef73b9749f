"""DVC stage ``decode``: see :mod:`releo.stages.decode`."""

from releo.stages.decode import main

if __name__ == "__main__":
    main()
