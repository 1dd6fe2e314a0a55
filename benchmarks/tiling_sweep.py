import sys, statistics, numpy as np, itertools, json
import dwc_compiler as dwc
import tvm
from dwc_compiler.compute import depthwise_prim_func
from dwc_compiler.schedules.cpu import CpuTiling, schedule_cpu
from dwc_compiler.targets import resolve_target
from dwc_compiler.workloads import WORKLOADS
dwc.set_num_threads(int(sys.argv[1]))
t = resolve_target("host")
names = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] != "all" else list(WORKLOADS)
cands = [(1,1,7),(1,1,4),(1,1,8),(1,2,4),(1,2,2),(1,2,3),(1,2,7),(2,1,4),(2,1,7),(2,2,2),(1,4,2),(1,1,14),(1,3,4)]
results = {}
for name in names:
    spec = WORKLOADS[name]
    x = dwc.empty_aligned(spec.input_shape,'float32'); x[...] = np.random.rand(*spec.input_shape)
    w = dwc.empty_aligned(spec.filter_shape,'float32'); w[...] = np.random.rand(*spec.filter_shape)
    out = dwc.empty_aligned(spec.output_shape,'float32')
    mods = {}
    for v, r, c in cands:
        if spec.out_height % r or spec.out_width % c or spec.out_channels % (16*v): continue
        sch = schedule_cpu(tvm.s_tir.Schedule(depthwise_prim_func(spec)), spec, CpuTiling(16, v, r, c))
        with tvm.transform.PassContext(opt_level=3):
            mods[(v,r,c)] = tvm.compile(sch.mod, target=t.tvm()).jit()
    times = {k: [] for k in mods}
    for rnd in range(7):
        for k, m in mods.items():
            times[k].extend(m.time_evaluator("main", tvm.cpu(), number=20, repeat=3)(x, w, out).results)
    med = {k: statistics.median(v)*1e6 for k, v in times.items()}
    best = min(med, key=med.get)
    print(f"{name:22s} best {best} {med[best]:.1f} | " + " ".join(f"{k}:{v:.1f}" for k, v in sorted(med.items(), key=lambda kv: kv[1])[:6]), flush=True)
    results[name] = {str(k): v for k, v in med.items()}
json.dump(results, open(f"/tmp/perf/sweep_{sys.argv[1]}.json","w"), indent=1)
