"""``courtship serve``: the HTTP endpoints providers call back (see :mod:`courtship.serve.app`).

Starlette and uvicorn are an optional extra (``pip install 'courtship[serve]'``): nothing else in
Courtship imports this package.
"""
