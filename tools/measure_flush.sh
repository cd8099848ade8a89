#!/usr/bin/env bash
# The sweep behind tf_keras_jax_flush_subnormals / torch_onednn_bf16_flush_subnormals: 120 seeded cases with
# subnormal inputs (values subnormal_*), four dtypes, through the engines and their other kernels.
# Usage: tools/measure_flush.sh [OUT_DIR]   (then read OUT_DIR/summary.md; every failing row names its entry)
set -euo pipefail
out=${1:-reports/flush-sweep}
ids=$(python - <<'PY'
import random
from refconv.spec import ConvSpec
rnd = random.Random(1)
ids = []
for _ in range(120):
    dt = rnd.choice(["float32", "bfloat16", "float64", "float16"])
    n, h, w = rnd.randint(1, 3), rnd.randint(1, 12), rnd.randint(1, 12)
    kh, kw = rnd.randint(1, 4), rnd.randint(1, 4)
    s = (rnd.randint(1, 2), rnd.randint(1, 2))
    c_in, c_out = rnd.choice([1, 1, 2, 4]), rnd.randint(1, 4)
    place = rnd.choice(["mid", "corner", "ring"])
    try:
        spec = ConvSpec(n=n, h=h, w=w, c_in=c_in, c_out=c_out, kh=kh, kw=kw, strides=s,
                        padding=rnd.choice(["SAME", "VALID"]), dtype=dt, bias=rnd.random() < 0.5,
                        values=f"subnormal_{place}", seed=rnd.randint(0, 9999))
    except Exception:
        continue
    ids.append(spec.id)
print(",".join(ids))
PY
)
refconv run --no-progress --relations none --out "$out" --cases "$ids" \
    --adapters tf,tf:onednn=off,jax,keras,torch,torch:mkldnn=off,torch-nn
