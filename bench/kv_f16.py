#!/usr/bin/env python3
"""Keys and values in f16 against f32: the decode-step cost of the attention loopc's graph uses.

loopc's fused graph runs each layer's attention as one ONNX (opset 23) `Attention` node that
takes the past keys and values and returns the present ones. This script times that node alone
at the default model's shapes (SmolLM2-135M: 9 query heads, 3 key/value heads, head size 64)
three ways: the cache in f32 (what loopc does), the cache in f16 cast to f32 around an f32
`Attention`, and the whole `Attention` in f16 (queries cast to f16, the output back to f32). It
prints the best of 5 × 50 calls per configuration and the largest difference of the output
from the f32 one.

    python3 -m venv /tmp/kv && /tmp/kv/bin/pip install onnx onnxruntime==1.32.0 numpy
    /tmp/kv/bin/python bench/kv_f16.py

Not run in CI: it is how the choice of f32 keys and values was measured (README, "Precision").
"""
import sys, time, numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto as TP
H, KVH, D = 9, 3, 64
def model(kind):
    # kind: 'f32' all f32; 'cast' f16 cache cast to f32 around f32 attention; 'f16' attention in f16
    cache_t = TP.FLOAT if kind == 'f32' else TP.FLOAT16
    ins = [helper.make_tensor_value_info('q', TP.FLOAT, ['B', 1, H*D]),
           helper.make_tensor_value_info('k', TP.FLOAT, ['B', 1, KVH*D]),
           helper.make_tensor_value_info('v', TP.FLOAT, ['B', 1, KVH*D]),
           helper.make_tensor_value_info('pk', cache_t, ['B', KVH, 'P', D]),
           helper.make_tensor_value_info('pv', cache_t, ['B', KVH, 'P', D])]
    outs = [helper.make_tensor_value_info('y', TP.FLOAT, ['B', 1, H*D]),
            helper.make_tensor_value_info('prk', cache_t, ['B', KVH, 'T', D]),
            helper.make_tensor_value_info('prv', cache_t, ['B', KVH, 'T', D])]
    n = []
    attrs = dict(q_num_heads=H, kv_num_heads=KVH)
    if kind == 'f32':
        n.append(helper.make_node('Attention', ['q','k','v','','pk','pv'], ['y','prk','prv'], **attrs))
    elif kind == 'cast':
        n += [helper.make_node('Cast', ['pk'], ['pk32'], to=TP.FLOAT), helper.make_node('Cast', ['pv'], ['pv32'], to=TP.FLOAT),
              helper.make_node('Attention', ['q','k','v','','pk32','pv32'], ['y','prk32','prv32'], **attrs),
              helper.make_node('Cast', ['prk32'], ['prk'], to=TP.FLOAT16), helper.make_node('Cast', ['prv32'], ['prv'], to=TP.FLOAT16)]
    else:
        n += [helper.make_node('Cast', [x], [x+'16'], to=TP.FLOAT16) for x in 'qkv']
        n += [helper.make_node('Attention', ['q16','k16','v16','','pk','pv'], ['y16','prk','prv'], **attrs),
              helper.make_node('Cast', ['y16'], ['y'], to=TP.FLOAT)]
    g = helper.make_graph(n, 'a', ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 23)])
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    return ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])
rng = np.random.default_rng(0)
sess = {k: model(k) for k in ['f32', 'cast', 'f16']}
print('batch past  f32_us  f16cache+cast_us  f16attention_us  max|Δy| cast / f16')
for B in [1, 8]:
    for P in [300, 1000]:
        feeds = dict(q=rng.standard_normal((B,1,H*D),dtype=np.float32), k=rng.standard_normal((B,1,KVH*D),dtype=np.float32),
                     v=rng.standard_normal((B,1,KVH*D),dtype=np.float32), pk=rng.standard_normal((B,KVH,P,D),dtype=np.float32),
                     pv=rng.standard_normal((B,KVH,P,D),dtype=np.float32))
        res = {}
        for k, s in sess.items():
            f = dict(feeds)
            if k != 'f32': f['pk'] = f['pk'].astype(np.float16); f['pv'] = f['pv'].astype(np.float16)
            y = s.run(['y'], f)[0]
            best = 1e9
            for rep in range(5):
                t = time.perf_counter(); N = 50
                for _ in range(N): s.run(['y'], f)
                best = min(best, (time.perf_counter() - t) / N)
            res[k] = (best * 1e6, y)
        d1 = np.abs(res['cast'][1] - res['f32'][1]).max(); d2 = np.abs(res['f16'][1] - res['f32'][1]).max()
        print(f"{B:5} {P:5} {res['f32'][0]:8.0f} {res['cast'][0]:12.0f} {res['f16'][0]:16.0f}   {d1:.1e} / {d2:.1e}")
