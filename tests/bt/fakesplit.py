"""fakesplit.py — writes a fake split folder (random shard files + model.json in the format
`split` writes) so BitTorrent tests can move large data without a real model."""
import hashlib
import json
import os
import sys


def make(dirpath, sizes, seed=1, arch="llama", n_layers=None):
    os.makedirs(dirpath, exist_ok=True)
    shards = []
    layers_per = 2
    rnd = __import__("random").Random(seed)
    for i, size in enumerate(sizes):
        name = "shard-%d.gguf" % i
        h = hashlib.sha256()
        with open(os.path.join(dirpath, name), "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                block = rnd.randbytes(n)
                f.write(block)
                h.update(block)
                left -= n
        shards.append({"index": i, "file": name, "layer_first": i * layers_per,
                       "layer_last": i * layers_per + layers_per - 1, "size": size,
                       "tensor_bytes": size, "n_tensors": 1, "sha256": h.hexdigest()})
    man = {"format": "shardswarm-model", "version": 1, "model_id": "fake-%d" % seed,
           "architecture": arch, "name": "fake", "n_layers": n_layers or layers_per * len(sizes),
           "n_shards": len(sizes), "alignment": 32, "source": {"files": ["fake.gguf"], "size": sum(sizes)},
           "shards": shards}
    with open(os.path.join(dirpath, "model.json"), "w") as f:
        json.dump(man, f, indent=2)
    return shards


if __name__ == "__main__":
    make(sys.argv[1], [int(x) for x in sys.argv[2:]])
