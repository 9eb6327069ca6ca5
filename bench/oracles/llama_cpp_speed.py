#!/usr/bin/env python3
"""Measures llama.cpp (llama-cpp-python 0.3.36) on a GGUF the way `loopc bench model` measures
loopc: prefill of a 300-token prompt and batch-1 greedy decode, 2 threads, for the README's
side-by-side table.

Usage: llama_cpp_speed.py MODEL.gguf [THREADS]
"""

import sys
import time

import numpy as np
import llama_cpp

import plain_cpu  # noqa: F401  (llama.cpp's plain CPU kernels: see plain_cpu.py)


def main():
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    prompt = llm.tokenize(text.encode(), add_bos=True)[:300]
    best_prefill = 0.0
    for _ in range(3):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        best_prefill = max(best_prefill, len(prompt) / (time.perf_counter() - t))
    decode = []
    for _ in range(3):
        llm.reset()
        llm.eval(prompt[:16])
        n = 64
        t = time.perf_counter()
        for _ in range(n):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([tok])
        decode.append(n / (time.perf_counter() - t))
    print(f"{path}: prefill {best_prefill:.0f} tok/s (300 tokens), decode batch 1: {max(decode):.1f} tok/s (best of 3 x 64 tokens), {threads} threads")


if __name__ == "__main__":
    main()
