#!/usr/bin/env python3
"""Starts llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) with the
weights loaded on llama.cpp's plain CPU buffers, for `loopc bench structured --server-python`
and the real-server test (`tests/llama_server.rs`).

Why a launcher: llama-cpp-python 0.3.36 on this machine kind dies with SIGILL (an invalid
opcode in `libggml-cpu.so`) on its first completion with quantized weights, in the "extra"
buffer types it repacks weights into. `llama_model_params.use_extra_bufts = False` avoids
them, but neither `Llama(...)` nor the server's `ModelSettings` exposes that field, so this
wraps `llama_model_default_params` (which `Llama.__init__` calls) before the server starts.
Everything else is the stock server: every argument is passed on to it unchanged.

Usage: llama_server.py --model MODEL.gguf --host 127.0.0.1 --port PORT [server options]
"""

import sys

try:
    import llama_cpp
    import llama_cpp.llama
    from llama_cpp.server.__main__ import main
except ImportError as err:  # say what is missing instead of a traceback
    sys.exit(
        f"llama_server.py: {err}; this Python needs llama-cpp-python and its server's packages "
        "(pip install 'llama-cpp-python[server]', or uvicorn fastapi sse-starlette "
        "starlette-context pydantic-settings)"
    )

_default_params = llama_cpp.llama_model_default_params


def _plain_cpu_params():
    params = _default_params()
    params.use_extra_bufts = False
    return params


# `Llama.__init__` looks the function up on the module at call time, so this takes effect for
# every model the server loads.
llama_cpp.llama.llama_cpp.llama_model_default_params = _plain_cpu_params

if __name__ == "__main__":
    main()
