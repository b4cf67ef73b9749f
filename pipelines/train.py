"""DVC stage ``train``: see :mod:`releo.stages.train`."""

from releo.stages.train import main

if __name__ == "__main__":
    main()
