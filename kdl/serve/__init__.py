"""`kdl serve RUN`: any saved run behind an HTTP endpoint and a demo page (docs/serve.md).

FastAPI and uvicorn, the optional extra `kdl[serve]`. `app.py` holds the endpoints, the limits
and the error answers; `model.py` the run, loaded once, and how a request's inputs are read;
`worker.py` the one thread every call into the model runs on, which joins concurrent
predictions; `page.html` the demo page (plain HTML and JavaScript, nothing from elsewhere).

>>> from kdl.serve import create_app, serve
>>> app = create_app("runs/digits")    # an ASGI app, for uvicorn or FastAPI's TestClient  # doctest: +SKIP
>>> serve("runs/digits", port=8000)    # what `kdl serve runs/digits` runs               # doctest: +SKIP
"""

from kdl.serve.app import MAX_BODY, create_app, serve
from kdl.serve.model import MAX_BATCH, ServedRun

__all__ = ["MAX_BATCH", "MAX_BODY", "ServedRun", "create_app", "serve"]
