"""The browser client: the page (``static/``) and the web site that serves it and its WebSocket."""
