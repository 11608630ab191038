#!/usr/bin/python3
"""The style-transfer iteration of bench/bench_nst.c in PyTorch, for the side-by-side table.

VGG-19 features to relu5_1 with random weights (torchvision's layer sequence, built here so torchvision
is not needed), input requires_grad, content loss at relu4_2, Gram style losses at relu1_1..relu5_1, TV,
forward + backward to the pixels. Time per iteration (best of N after a warm-up) and the peak RSS of a
fresh process per size.

    /usr/bin/python3 bench/torch_vgg.py [--threads 2] [--reps 3] [--sizes 256,512,1024] [--pool avg|max]
"""
import argparse
import resource
import subprocess
import sys
import time

CFG = [64, 64, "P", 128, 128, "P", 256, 256, 256, 256, "P", 512, 512, 512, 512, "P", 512]  # to conv5_1
NAMES = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu3_4",
         "relu4_1", "relu4_2", "relu4_3", "relu4_4", "relu5_1"]
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT = "relu4_2"


def run(size, threads, reps, pool):
    import torch
    import torch.nn as nn
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers, cin = [], 3
    for v in CFG:
        if v == "P":
            layers.append(nn.AvgPool2d(2, 2) if pool == "avg" else nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    net = nn.Sequential(*layers).eval()
    for p in net.parameters():
        p.requires_grad_(False)

    def feats(x):
        out, k = {}, 0
        for layer in net:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                out[NAMES[k]] = x
                k += 1
        return out

    def gram(f):
        c, h, w = f.shape[1:]
        f = f.reshape(c, h * w)
        return f @ f.t() / (c * h * w)

    with torch.no_grad():
        content = torch.rand(1, 3, size, size) * 255
        style = torch.rand(1, 3, size, size) * 255
        fc = feats(content)[CONTENT].clone()
        gs = {n: gram(f) for n, f in feats(style).items() if n in STYLE}
    x = (torch.rand(1, 3, size, size) * 255).requires_grad_(True)
    best = best_cpu = 1e30
    for r in range(reps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        x.grad = None
        f = feats(x)
        loss = 5.0 * torch.mean((f[CONTENT] - fc) ** 2)
        for n in STYLE:
            loss = loss + 100.0 * torch.mean((gram(f[n]) - gs[n]) ** 2)
        tv = torch.sum((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2) + torch.sum((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2)
        loss = loss + 1e-3 * tv
        loss.backward()
        dt, dc = time.perf_counter() - t0, (time.process_time() - c0) / threads
        if r > 0:
            best, best_cpu = min(best, dt), min(best_cpu, dc)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("%6d %7d %10.3f %9.1f %10.3f %12.0f   torch %s" % (size, threads, best, 377.3 * (size / 512.0) ** 2 / best,
                                                           best_cpu, rss, torch.__version__), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--pool", default="avg", choices=["avg", "max"])
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.size:
        run(a.size, a.threads, a.reps, a.pool)
        return
    print("torch_vgg: VGG-19 to relu5_1 (random weights, %s pooling), content+style+TV, forward+backward to "
          "the input; best of %d after a warm-up; GF/s = 377 GFLOP direct-conv at 512 px, scaled" % (a.pool, a.reps))
    print("%6s %7s %10s %9s %10s %12s" % ("size", "threads", "s/iter", "GF/s", "cpu/thr s", "peak MiB"), flush=True)
    for s in a.sizes.split(","):
        subprocess.run([sys.executable, __file__, "--size", s, "--threads", str(a.threads), "--reps", str(a.reps),
                        "--pool", a.pool], check=True)


if __name__ == "__main__":
    main()
