"""The whole museforge app (every task + fine-tuning): `python demos/app.py`, like `museforge demo`.

    python demos/app.py [--model PATH_OR_ID] [--port 7860]
"""

import argparse

from museforge.ui import serve

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default model of the text tabs")
    parser.add_argument("--melody-model", default=None, help="default model of the Melody tab")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    serve(model=args.model, melody_model=args.melody_model, host=args.host, port=args.port)
