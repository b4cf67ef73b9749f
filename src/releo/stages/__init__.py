"""The DVC stages of ``dvc.yaml``, one module each: its outputs, its run and its ``main``.

:mod:`.chunk`, :mod:`.tune`, :mod:`.train`, :mod:`.baseline`, :mod:`.embed`, :mod:`.calibrate`,
:mod:`.decode`, :mod:`.evaluate`, :mod:`.discover`, :mod:`.register`. A stage module names the
paths it writes and imports those it reads from the stage that writes them; ``pipelines/`` only
calls its ``main``. The library (``releo.data``, ``releo.train``, ``releo.products``,
``releo.discover``, ...) never imports a stage.
"""
