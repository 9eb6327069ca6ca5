"""Makes llama-cpp-python load every model on llama.cpp's plain CPU kernels.

On this machine kind, llama.cpp's extra CPU buffer types (AMX tiles, repacked weights) die
with SIGILL on quantized matrices; the plain kernels compute the same maths. Importing this
module is enough: `Llama.__init__` looks the defaults up on the module at call time.
"""

import llama_cpp
import llama_cpp.llama

_default_params = llama_cpp.llama_model_default_params


def _plain_cpu_params():
    params = _default_params()
    params.use_extra_bufts = False
    return params


llama_cpp.llama.llama_cpp.llama_model_default_params = _plain_cpu_params
