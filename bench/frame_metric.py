#!/usr/bin/env python3
"""How strongly an output is framed: for each RGB channel, (mean of the B-pixel border band - mean of the
interior) in units of the interior's standard deviation, minus the same number for the content image
(resized to the output's size), so a content that is darker at its edges does not count as a frame.
The printed figure is the largest magnitude over the channels. A second line gives the rim's
roughness: mean |pixel - mean of its 3x3 neighbourhood| over the outer 2 px, over the same in the
interior, divided by that ratio for the content (1 = as rough as the content's own edge; leftover
initial noise at the edge shows as > 1). A third line gives the interior's roughness itself (the same
mean |pixel - 3x3 mean|, x1000, pixels in 0..1) beside the content's: the output's overall noise.
--edges adds, per edge, the roughness of the outer 4 pixel lines (outermost first) over the interior's.

    /usr/bin/python3 bench/frame_metric.py OUTPUT CONTENT [--band 6] [--edges]

Prints the excess per channel and its maximum. Needs numpy and ImageMagick's `convert`."""
import subprocess, sys
import numpy as np

def load(path, size=None):
    cmd = ["convert", path, "-strip"] + (["-resize", "%dx%d!" % size] if size else []) + ["-depth", "8", "ppm:-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    parts = raw.split(maxsplit=4)          # P6 W H 255 data
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(parts[4][: w * h * 3], np.uint8).reshape(h, w, 3).astype(np.float64) / 255

def band_offset(img, b):
    inner = np.zeros(img.shape[:2], bool)
    inner[b:-b, b:-b] = True
    out = []
    for c in range(3):
        ch = img[:, :, c]
        sd = ch[inner].std() + 1e-6
        out.append((ch[~inner].mean() - ch[inner].mean()) / sd)
    return np.array(out)

def deviation(img):
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    blur = sum(pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9
    return np.abs(img - blur).mean(2)

def roughness_ratio(img, r=2, b=6):
    dev = deviation(img)
    h, w = img.shape[:2]
    rim = np.zeros((h, w), bool)
    rim[:r, :] = rim[-r:, :] = rim[:, :r] = rim[:, -r:] = True
    inner = np.zeros((h, w), bool)
    inner[b:-b, b:-b] = True
    return dev[rim].mean() / (dev[inner].mean() + 1e-9)

def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    band = int(sys.argv[sys.argv.index("--band") + 1]) if "--band" in sys.argv else 6
    if "--band" in sys.argv: args.remove(str(band))
    out = load(args[0])
    content = load(args[1], (out.shape[1], out.shape[0]))
    excess = band_offset(out, band) - band_offset(content, band)
    print("%s: border band %d px, offset beyond the content's (R G B) %+.3f %+.3f %+.3f, max |.| %.3f"
          % (args[0], band, excess[0], excess[1], excess[2], abs(excess).max()))
    print("%s: rim (outer 2 px) roughness / interior, over the content's: %.3f"
          % (args[0], roughness_ratio(out) / roughness_ratio(content)))
    dev, cdev = deviation(out), deviation(content)
    print("%s: interior roughness x1000: %.1f (content %.1f)"
          % (args[0], 1000 * dev[band:-band, band:-band].mean(), 1000 * cdev[band:-band, band:-band].mean()))
    if "--edges" in sys.argv:
        inner = dev[8:-8, 8:-8].mean()
        lines = {"top": dev[0:4, 4:-4].mean(1), "bottom": dev[-1:-5:-1, 4:-4].mean(1),
                 "left": dev[4:-4, 0:4].mean(0), "right": dev[4:-4, -1:-5:-1].mean(0)}
        print("%s: edge roughness / interior, outer 4 lines: %s" % (args[0], "  ".join(
            "%s %s" % (k, " ".join("%.2f" % (x / inner) for x in v)) for k, v in lines.items())))

main()
