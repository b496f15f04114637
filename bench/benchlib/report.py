"""Numbers to Markdown: medians over rounds, their spread, ratios, tables."""

import math
import statistics


def median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def spread(values):
    """(max - min) / median over the rounds, in percent."""
    m = median(values)
    values = [v for v in values if v is not None]
    if not values or not m:
        return None
    return 100.0 * (max(values) - min(values)) / m


def num(v, unit=""):
    if v is None:
        return "n/a"
    if unit == "ms":
        if v >= 100:
            return f"{v:.0f} ms"
        if v >= 10:
            return f"{v:.1f} ms"
        return f"{v:.2f} ms"
    if v >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.1f}{unit}"


def with_spread(values, unit=""):
    m = median(values)
    s = spread(values)
    if m is None:
        return "n/a"
    return f"{num(m, unit)} ±{s / 2:.0f}%" if s is not None and len(values) > 1 else num(m, unit)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def verdict(r, target, higher_is_better=True):
    if r is None:
        return "n/a"
    ok = r >= target if higher_is_better else r <= target
    return "met" if ok else "not met"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def details(summary, body, lang=""):
    return f"<details><summary>{summary}</summary>\n\n```{lang}\n{body.rstrip()}\n```\n\n</details>\n"


def log_summary(logdir, top=6):
    """WARN and ERROR lines of plexgate's logs, counted by message (fields stripped)."""
    import os
    import re

    pat = re.compile(r"\s(WARN|ERROR)\s+(\S+?): (.*)$")
    field = re.compile(r"\s\w+=")
    out = []
    for name in sorted(os.listdir(logdir)):
        if not name.endswith((".log", ".out")):
            continue
        counts = {}
        with open(os.path.join(logdir, name), errors="replace") as f:
            for line in f:
                m = pat.search(line)
                if not m:
                    continue
                msg = field.split(m.group(3), 1)[0].strip()
                key = f"{m.group(1)} {m.group(2)}: {msg}"
                counts[key] = counts.get(key, 0) + 1
        if counts:
            out.append(f"{name}:")
            for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
                out.append(f"  {v:7d}  {k[:160]}")
    return "\n".join(out)
