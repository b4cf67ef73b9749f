"""DVC stage ``evaluate``: see :mod:`releo.stages.evaluate`."""

from releo.stages.evaluate import main

if __name__ == "__main__":
    main()
