"""The local web page, ``priorfit serve`` (the ``[app]`` extra): see :mod:`priorfit.app.server`."""
