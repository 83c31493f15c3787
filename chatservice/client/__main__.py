"""``python -m chatservice.client HOST PORT``: the same as ``chat-client``."""

from chatservice.client.main import run

if __name__ == "__main__":
    run()
