"""DVC stage ``discover``: see :mod:`releo.stages.discover`."""

from releo.stages.discover import main

if __name__ == "__main__":
    main()
