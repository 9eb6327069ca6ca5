#!/usr/bin/env sh
# Builds a Python venv with llama-cpp-python from PyPI (it compiles llama.cpp: ten minutes or
# more on 2 cores), for `loopc bench model --llama-cpp VENV/bin/python`. Never run in CI.
#
#   bench/llama-cpp-venv.sh [VENV_DIR]     (default: ./.venv-llama)
#
# llama.cpp is built for this CPU's vector extensions but without AMX: virtual machines that
# do not grant AMX tile state (Firecracker among them) kill a native build with SIGILL on its
# first matrix product. Set CMAKE_ARGS to build otherwise.
set -eu
venv="${1:-.venv-llama}"
: "${CMAKE_ARGS:=-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON}"
export CMAKE_ARGS
python3 -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check --no-cache-dir "llama-cpp-python==0.3.36"
"$venv/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__, 'ready:', '$venv/bin/python')"
