"""DVC stage ``embed``: see :mod:`releo.stages.embed`."""

from releo.stages.embed import main

if __name__ == "__main__":
    main()
