"""Model export benchmark: save and load a 784-256-128-10 ReLU MLP (float32, inference).

graphc (gc.save / gc.load), torch.export (save / load) and jax.export (serialize /
deserialize), each in processes of its own:

* save: seconds to write the file (the model already compiled/exported once where the
  peer needs that; the export step itself is timed for torch and jax, which have one);
* file size against the raw weights (0.9 MB);
* load to first result in a fresh process: ``cold`` with an empty compile cache, ``warm``
  with the cache the cold run filled (graphc: its disk cache; jax: its compilation cache
  in a temporary directory; torch.export has no compile cache: eager kernels). The import
  of the library is timed apart;
* time per call of the loaded model against the original in one process, at batch 64
  and 1024 (median of several rounds after warm-up), every output checked first against
  NumPy.

    python benchmarks/export.py                       # every peer installed, a table
    python benchmarks/export.py --only graphc --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
os.environ.setdefault("GRAPHC_COMPILE", "eager")  # time compiled code, not the interpreter tier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (784, 256, 128, 10)
BATCHES = (64, 1024)
PEERS = ("graphc", "torch", "jax")


def weights(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / np.sqrt(fan_in)
        out.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        out.append(rng.uniform(-bound, bound, (fan_out,)).astype(np.float32))
    return out


def inputs(batch, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, SIZES[0])).astype(np.float32)


def reference(x, ws, xp=np):
    """The MLP's forward pass in NumPy (``xp=jax.numpy``: the JAX peer's)."""
    h = x
    for k in range(0, len(ws), 2):
        h = h @ ws[k].T + ws[k + 1]
        if k + 2 < len(ws):
            h = xp.maximum(h, 0)
    return h


def median_call(fn, x, rounds=7, min_time=0.2):
    for _ in range(3):
        fn(x)
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn(x)
        if time.perf_counter() - t >= min_time / rounds:
            break
        n *= 2
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn(x)
        times.append((time.perf_counter() - t) / n)
    return float(np.median(times))


def check(got, x, ws, what):
    want = reference(x, ws)
    if not np.allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5):
        raise AssertionError(f"{what}: wrong result (max error {np.max(np.abs(np.asarray(got) - want))})")


# -- graphc ---------------------------------------------------------------------------------
def _graphc_model(ws):
    from graphc import nn
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    for p, w in zip(model.parameters(), ws):
        p.data[...] = w
    return model.eval()


def graphc_save(path):
    import graphc as gc
    ws = weights()
    model = _graphc_model(ws)
    x = inputs(BATCHES[0])
    original = gc.trace(model)
    check(original(x), x, ws, "graphc original")
    t = time.perf_counter()
    gc.save(model, path, x)
    save = time.perf_counter() - t
    loaded = gc.load(path)
    calls = {}
    for b in BATCHES:
        xb = inputs(b)
        check(loaded(xb), xb, ws, f"graphc loaded at batch {b}")
        calls[b] = {"original": median_call(original, xb), "loaded": median_call(loaded, xb)}
    return {"save_s": save, "calls": calls}


def graphc_load(path):
    t = time.perf_counter()
    import graphc as gc
    imported = time.perf_counter() - t
    x = inputs(BATCHES[0])
    t = time.perf_counter()
    out = gc.load(path)(x)
    first = time.perf_counter() - t
    check(out, x, weights(), "graphc load")
    return {"import_s": imported, "first_result_s": first}


# -- torch.export -------------------------------------------------------------------------------
def _torch_model(ws):
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for p, w in zip(model.parameters(), ws):
            p.copy_(torch.from_numpy(w))
    return model.eval()


def torch_save(path):
    import torch
    ws = weights()
    model = _torch_model(ws)
    x = inputs(BATCHES[0])
    t = time.perf_counter()
    batch = torch.export.Dim("B", min=1, max=1 << 20)
    program = torch.export.export(model, (torch.from_numpy(x),), dynamic_shapes={"input": {0: batch}})
    exported = time.perf_counter() - t
    t = time.perf_counter()
    torch.export.save(program, path)
    save = time.perf_counter() - t
    loaded = torch.export.load(path).module()
    calls = {}
    with torch.inference_mode():
        for b in BATCHES:
            xb = torch.from_numpy(inputs(b))
            check(loaded(xb).numpy(), xb.numpy(), ws, f"torch loaded at batch {b}")
            calls[b] = {"original": median_call(model, xb), "loaded": median_call(loaded, xb)}
    return {"export_s": exported, "save_s": save, "calls": calls}


def torch_load(path):
    t = time.perf_counter()
    import torch
    imported = time.perf_counter() - t
    x = torch.from_numpy(inputs(BATCHES[0]))
    t = time.perf_counter()
    with torch.inference_mode():
        out = torch.export.load(path).module()(x)
    first = time.perf_counter() - t
    check(out.numpy(), x.numpy(), weights(), "torch load")
    return {"import_s": imported, "first_result_s": first}


# -- jax.export ---------------------------------------------------------------------------------
def _jax_fn(ws):
    import jax.numpy as jnp
    params = [jnp.asarray(w) for w in ws]
    return lambda x: reference(x, params, jnp)


def jax_save(path):
    import jax
    import jax.numpy as jnp
    ws = weights()
    fn = jax.jit(_jax_fn(ws))
    t = time.perf_counter()
    (b,) = jax.export.symbolic_shape("B")
    exported = jax.export.export(fn)(jax.ShapeDtypeStruct((b, 784), jnp.float32))
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    with open(path, "wb") as f:
        f.write(exported.serialize())
    save = time.perf_counter() - t
    with open(path, "rb") as f:
        loaded = jax.export.deserialize(bytearray(f.read()))
    calls = {}
    for n in BATCHES:
        xb = jnp.asarray(inputs(n))
        check(loaded.call(xb), inputs(n), ws, f"jax loaded at batch {n}")
        calls[n] = {"original": median_call(lambda v: fn(v).block_until_ready(), xb),
                    "loaded": median_call(lambda v: loaded.call(v).block_until_ready(), xb)}
    return {"export_s": export_s, "save_s": save, "calls": calls}


def jax_load(path):
    t = time.perf_counter()
    import jax
    import jax.numpy as jnp
    imported = time.perf_counter() - t
    x = inputs(BATCHES[0])
    t = time.perf_counter()
    with open(path, "rb") as f:
        loaded = jax.export.deserialize(bytearray(f.read()))
    out = loaded.call(jnp.asarray(x)).block_until_ready()
    first = time.perf_counter() - t
    check(out, x, weights(), "jax load")
    return {"import_s": imported, "first_result_s": first}


WORKERS = {"graphc_save": graphc_save, "graphc_load": graphc_load, "torch_save": torch_save,
           "torch_load": torch_load, "jax_save": jax_save, "jax_load": jax_load}


def run_worker(name, path, env):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name, path],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_peer(peer, workdir, loads=3):
    path = os.path.join(workdir, {"graphc": "mlp.gcx", "torch": "mlp.pt2", "jax": "mlp.jaxexport"}[peer])
    cache = os.path.join(workdir, f"{peer}-cache")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if peer == "graphc":
        env["GRAPHC_CACHE_DIR"] = cache
    if peer == "jax":
        env["JAX_COMPILATION_CACHE_DIR"] = cache
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    shutil.rmtree(cache, ignore_errors=True)
    result = run_worker(f"{peer}_save", path, env)
    result["file_bytes"] = os.path.getsize(path)
    shutil.rmtree(cache, ignore_errors=True)  # the save process compiled: start the loads cold
    result["cold"] = run_worker(f"{peer}_load", path, env)
    warm = [run_worker(f"{peer}_load", path, env) for _ in range(loads)]
    result["warm"] = {k: float(np.median([w[k] for w in warm])) for k in warm[0]}
    return result


def versions(peers):
    import numba
    out = {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__}
    for peer in peers:
        if peer != "graphc":
            out[peer] = __import__(peer).__version__
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PEERS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, ROOT)
        print(json.dumps(WORKERS[args.worker[0]](args.worker[1])))
        return
    peers = [p for p in args.only.split(",") if p == "graphc" or _importable(p)]
    raw = sum(w.nbytes for w in weights())
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for peer in peers:
            results[peer] = bench_peer(peer, workdir)
    print(f"784-256-128-10 MLP, float32; raw weights {raw / 1e6:.3f} MB; {versions(peers)}")
    print(f"{'':8} {'export s':>9} {'save s':>8} {'file MB':>8} {'vs raw':>7} {'import s':>9} "
          f"{'cold load->result s':>20} {'warm load->result s':>20}")
    for peer, r in results.items():
        print(f"{peer:8} {r.get('export_s', float('nan')):9.3f} {r['save_s']:8.3f} {r['file_bytes'] / 1e6:8.3f} "
              f"{r['file_bytes'] / raw - 1:+7.1%} {r['warm']['import_s']:9.2f} "
              f"{r['cold']['first_result_s']:20.3f} {r['warm']['first_result_s']:20.3f}")
    print("time per call, loaded vs original (median):")
    for peer, r in results.items():
        for b, c in r["calls"].items():
            print(f"  {peer:8} batch {b:>5}: original {c['original'] * 1e6:9.1f} us, loaded "
                  f"{c['loaded'] * 1e6:9.1f} us ({c['loaded'] / c['original']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"raw_bytes": raw, "versions": versions(peers), "results": results}, f, indent=1)


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
