"""DVC stage ``chunk``: see :mod:`releo.stages.chunk`."""

from releo.stages.chunk import main

if __name__ == "__main__":
    main()
