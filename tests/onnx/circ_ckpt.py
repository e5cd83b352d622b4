#!/usr/bin/python3
"""Makes a block-circulant checkpoint from a dense one (test fixtures only).

    circ_ckpt.py IN.safetensors OUT.safetensors LAYER=BLOCK [LAYER=BLOCK ...]

Each named layer becomes circulant with that block size k (common/op.h):
linear -> circ_linear, conv2d -> circ_conv2d, lstm and gru keep their op
with the block attribute. Its matrices are replaced by random stored
vectors of the circulant shapes, (p, q, k) or (kh * kw, p, q, k), scaled
like the dense entries (same standard deviation), so the engine's FFT path
has something real to compute. The graph JSON in the metadata is edited
to match; everything else is copied. Never used at run time.
"""
import json
import struct
import sys

import numpy as np


def read(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    head = json.loads(b[8:8 + n])
    meta = head.pop('__metadata__', {})
    data = b[8 + n:]
    tensors = {}
    for name, t in head.items():
        assert t['dtype'] == 'F32', t
        s, e = t['data_offsets']
        tensors[name] = np.frombuffer(data[s:e], dtype='<f4').reshape(t['shape']).copy()
    return meta, tensors


def write(path, meta, tensors):
    head, blobs, off = {'__metadata__': meta}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype='<f4').tobytes()
        head[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(head, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def blocks(n, k):
    return (n + k - 1) // k


def main():
    src, dst, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    meta, t = read(src)
    graph = json.loads(meta['dnnpress.graph'])
    rng = np.random.RandomState(7)
    by_name = {l['name']: l for l in graph['layers']}
    for spec in specs:
        name, k = spec.split('=')
        k = int(k)
        layer = by_name[name]
        attrs = layer.setdefault('attrs', {})
        attrs['block'] = k
        op = layer['op']
        if op in ('linear', 'lstm', 'gru'):
            layer['op'] = 'circ_linear' if op == 'linear' else op
            mats = ['weight'] if op == 'linear' else ['weight_ih', 'weight_hh']
            for m in mats:
                w = t[name + '.' + m]
                rows, cols = w.shape
                t[name + '.' + m] = (rng.randn(blocks(rows, k), blocks(cols, k), k)
                                     * w.std()).astype(np.float32)
        elif op == 'conv2d':
            layer['op'] = 'circ_conv2d'
            w = t[name + '.weight']
            o, c, kh, kw = w.shape
            t[name + '.weight'] = (rng.randn(kh * kw, blocks(o, k), blocks(c, k), k)
                                   * w.std()).astype(np.float32)
        else:
            sys.exit('circ_ckpt: layer %s is %s, not linear, conv2d, lstm or gru' % (name, op))
    meta['dnnpress.graph'] = json.dumps(graph, separators=(',', ':'))
    write(dst, meta, t)
    print('circ_ckpt: %s (%s)' % (dst, ', '.join(specs)))


if __name__ == '__main__':
    main()
