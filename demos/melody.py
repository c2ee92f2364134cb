"""The Melody tab alone: `python demos/melody.py` then open http://127.0.0.1:7860 (see museforge.ui)."""

from museforge.ui import serve

if __name__ == "__main__":
    serve(tabs=["melody"])
