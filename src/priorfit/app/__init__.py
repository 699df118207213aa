"""The local web page, ``priorfit serve`` (the ``[app]`` extra): see :mod:`priorfit.app.server`;
one module per view (:mod:`~priorfit.app.regression`, :mod:`~priorfit.app.tables`,
:mod:`~priorfit.app.curves`)."""


class RequestError(ValueError):
    """A request a view cannot answer; the message says why (shown to the user)."""
