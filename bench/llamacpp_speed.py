#!/usr/bin/env python3
"""llama.cpp's speed on a GGUF, measured the way `loopc bench model` measures loopc, for the
side-by-side comparison in `loopc bench model --llama-cpp PYTHON`. Never run in CI.

Reads one JSON object on stdin:
  {"gguf": PATH, "threads": N, "prefill_text": STR, "decode_prompt": STR, "decode_tokens": N,
   "extra_buffer_types": BOOL (optional, default true)}
and prints one JSON object: prefill and decode (batch 1) tokens per second, and the peak
resident memory of this process (the model, its KV cache and the Python interpreter).

Needs llama-cpp-python (bench/llama-cpp-venv.sh builds a venv with it from PyPI).
"""
import json
import sys
import time

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_c


def without_extra_buffer_types():
    """Loads models without llama.cpp's extra buffer types (weight repacking). Some builds of
    the wheel die with SIGILL in them on some CPUs (loopc then asks again without them);
    llama-cpp-python's Llama takes no parameter for it, so its default is wrapped."""
    default = llama_cpp_c.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp_c.llama_model_default_params = params


def peak_rss_mb():
    # VmHWM, not getrusage: ru_maxrss survives exec, so a child of loopc would report
    # loopc's own peak when that is higher.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def main():
    req = json.load(sys.stdin)
    threads = int(req["threads"])
    extra = bool(req.get("extra_buffer_types", True))
    if not extra:
        without_extra_buffer_types()
    llm = llama_cpp.Llama(
        model_path=req["gguf"],
        n_ctx=2048,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    # Warm-up, as loopc's bench does: the first evaluation pays for lazy initialisation.
    llm.reset()
    llm.eval(llm.tokenize(b"warm up", add_bos=False, special=False))

    # Prefill: one evaluation of the whole prompt, best of three.
    ids = llm.tokenize(req["prefill_text"].encode(), add_bos=False, special=False)
    fastest = float("inf")
    for _ in range(3):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        fastest = min(fastest, time.perf_counter() - t)
    prefill = len(ids) / fastest

    # Decode at batch 1: greedy tokens one at a time after the prompt, timed after the first.
    prompt = llm.tokenize(req["decode_prompt"].encode(), add_bos=False, special=False)
    n = int(req["decode_tokens"])
    llm.reset()
    llm.eval(prompt)
    tok = llm.sample(temp=0.0)
    t = time.perf_counter()
    for _ in range(n - 1):
        llm.eval([tok])
        tok = llm.sample(temp=0.0)
    decode = (n - 1) / (time.perf_counter() - t)

    peak_mb = peak_rss_mb()
    print(json.dumps({
        "llama_cpp_version": llama_cpp.__version__,
        "prefill_tokens": len(ids),
        "prefill_tok_per_s": prefill,
        "decode_tok_per_s_batch1": decode,
        "peak_rss_mb": peak_mb,
        "extra_buffer_types": extra,
    }))


if __name__ == "__main__":
    main()
