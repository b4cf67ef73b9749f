"""DVC stage ``register``: see :mod:`releo.stages.register`."""

from releo.stages.register import main

if __name__ == "__main__":
    main()
