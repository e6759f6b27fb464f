"""Answer HTTP requests with a model: ``serve`` (its flags, the model, the listening socket),
``web`` (the FastAPI application, requests batched together) and ``serve_page.html``."""
