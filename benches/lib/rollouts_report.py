#!/usr/bin/env python3
"""benches/rollouts.sh's arithmetic: timings from its watch logs, and its Markdown section.

Usage: rollouts_report.py measure SCENARIO TOOL DIR T0 REPLICAS STEPS
       rollouts_report.py section META SAMPLES SECTION [REPORT]

`measure` reads the watch logs the bench wrote in DIR (one line per watch event: the epoch time it
was read, a tab, then `TYPE|field|field...`; see rollouts.sh for the fields of each file) and
prints `metric seconds` lines, every time counted from T0 (the image change) or between two
events; it exits 3 while the scenario is not finished yet (the bench polls it), so one definition
of "finished" serves the wait and the figures. `section` writes the "Progressive delivery beside
Argo Rollouts" section from the samples and, given REPORT, puts it in place of the old one there
(between this bench's markers), or at the end when there is none. Standard library only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import median, number, read_meta, read_samples, spread  # noqa: E402

NEW, OLD = ":2.0", ":1.0"  # the tags of the new and the stable image in every run
BEGIN = "<!-- benches/rollouts.sh: begin -->"
END = "<!-- benches/rollouts.sh: end -->"


def events(directory, names):
    """Every watch event of the files NAMES in DIR, in the order they were read: (time, file, fields)."""
    out = []
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                stamp, _, rest = line.rstrip("\n").partition("\t")
                try:
                    out.append((float(stamp), name, rest.split("|")))
                except ValueError:
                    continue
    out.sort(key=lambda e: e[0])
    return out


def num(text):
    try:
        return int(text)
    except ValueError:
        return 0


class Track:
    """First times of the conditions a scenario needs, replayed from the events."""

    def __init__(self, t0, replicas, steps):
        self.t0, self.replicas, self.steps = t0, replicas, steps
        self.first = {}  # condition -> first time it held
        self.index_at = {}  # step index k -> first time the rollout was at k or beyond

    def mark(self, key, t, holds):
        if holds and key not in self.first:
            self.first[key] = t

    def index(self, t, k):
        for i in range(0, k + 1):
            self.index_at.setdefault(i, t)


def full(rs_or_deploys, name_new, replicas):
    w = rs_or_deploys.get(name_new)
    return w is not None and w["avail"] == replicas and w["total"] == replicas


def track_ferry(ev, tr):
    app, deps, svc0, svc = {}, {}, None, None
    for t, f, x in ev:
        if f == "app" and len(x) >= 6:
            app = {"phase": x[1], "step": x[2], "analysis": x[5]}
        elif f == "deploy" and len(x) >= 6:
            if x[0] == "DELETED":
                deps.pop(x[1], None)
            else:
                deps[x[1]] = {"spec": num(x[2]), "avail": num(x[3]), "image": x[4], "total": num(x[5])}
        elif f == "svc" and len(x) >= 3 and x[1] == "web":
            svc0 = x[2] if svc0 is None else svc0
            svc = x[2]
        if t < tr.t0:
            continue
        phase = app.get("phase", "")
        if phase == "Completed":
            tr.index(t, tr.steps)
        elif phase and app.get("step", "") != "":
            tr.index(t, num(app["step"]))
        web, canary = deps.get("web"), deps.get("web-canary")
        tr.mark("switch", t, svc0 is not None and svc != svc0)
        gone = canary is None or canary["total"] == 0
        tr.mark("promoted", t, phase == "Completed" and web is not None and web["image"].endswith(NEW)
                and full(deps, "web", tr.replicas) and gone)
        tr.mark("failed", t, app.get("analysis") == "Failed" or phase == "Aborted")
        tr.mark("back", t, "failed" in tr.first and web is not None and web["image"].endswith(OLD)
                and full(deps, "web", tr.replicas) and gone)


def track_argo(ev, tr):
    ro, rs, svc0, svc, stable0, failed_run = {}, {}, None, None, None, False
    for t, f, x in ev:
        if f == "rollout" and len(x) >= 6:
            ro = {"step": x[1], "phase": x[2], "stable": x[3], "current": x[4], "abort": x[5]}
            stable0 = x[3] if stable0 is None and x[3] else stable0
        elif f == "rs" and len(x) >= 6:
            if x[0] == "DELETED":
                rs.pop(x[2], None)
            else:
                rs[x[2]] = {"spec": num(x[3]), "avail": num(x[4]), "total": num(x[5])}
        elif f == "run" and len(x) >= 3:
            failed_run = failed_run or x[2] == "Failed"
        elif f == "svc" and len(x) >= 3 and x[1] == "web":
            svc0 = x[2] if svc0 is None else svc0
            svc = x[2]
        if t < tr.t0 or stable0 is None:
            continue
        new = ro.get("current", "")
        rolling = new != stable0
        done = rolling and ro.get("stable") == new
        if done:
            tr.index(t, tr.steps)
        elif rolling and ro.get("step", "") != "":
            tr.index(t, num(ro["step"]))
        others_empty = all(v["total"] == 0 for k, v in rs.items() if k != new)
        tr.mark("switch", t, svc0 is not None and svc != svc0)
        tr.mark("promoted", t, done and full(rs, new, tr.replicas) and others_empty)
        tr.mark("failed", t, failed_run or ro.get("abort") == "true")
        canary_empty = all(v["total"] == 0 for k, v in rs.items() if k != stable0)
        tr.mark("back", t, "failed" in tr.first and full(rs, stable0, tr.replicas) and canary_empty)


# What ends each scenario.
FINISH = {"canary": "promoted", "analysis": "promoted", "abort": "back", "bluegreen": "promoted"}


def measure(scenario, tool, directory, t0, replicas, steps):
    tr = Track(t0, replicas, steps)
    if tool == "ferry":
        track_ferry(events(directory, ["app", "deploy", "svc"]), tr)
    else:
        track_argo(events(directory, ["rollout", "rs", "run", "svc"]), tr)
    finish = FINISH[scenario]
    if finish not in tr.first:
        return None
    out, at = {}, tr.index_at
    out["total"] = tr.first[finish] - t0
    if scenario in ("canary", "analysis"):
        starts = [t0] + [at.get(k) for k in range(1, steps + 1)]
        for k in range(steps):
            if starts[k] is not None and starts[k + 1] is not None:
                out[f"step{k}"] = starts[k + 1] - starts[k]
        if at.get(steps) is not None:
            out["promotion"] = tr.first["promoted"] - at[steps]
    if scenario == "abort" and "failed" in tr.first:
        out["to_failed"] = tr.first["failed"] - t0
        out["back"] = tr.first["back"] - tr.first["failed"]
    if scenario == "bluegreen" and "switch" in tr.first:
        out["switch"] = tr.first["switch"] - t0
    return out


# --- the section --------------------------------------------------------------------------------


def ratio(argo, ferry, better):
    """Argo / ferry of two medians, in words: above 1 ferry is better, below 1 Argo Rollouts is."""
    if argo is None or ferry is None:
        return "n/a"
    if ferry <= 0 and argo <= 0:
        return "equal (both 0)"
    if ferry <= 0:
        return f"ferry: none (Argo Rollouts {number(argo)})"
    if argo <= 0:
        return f"**Argo Rollouts: none** (ferry {number(ferry)})"
    r = argo / ferry
    if abs(r - 1) < 0.05:
        return f"{r:.2f} (equal)"
    if r >= 1:
        return f"{r:.2f} (ferry {r:.1f}× {better})"
    return f"{r:.2f} (**Argo Rollouts {1 / r:.1f}× {better}**)"


COMMON_ROWS = [
    ("API requests (the tool's own client count)", "client_requests", "fewer", ""),
    ("API requests (API server, every client, in the window)", "apiserver_requests", "fewer", ""),
    ("CPU seconds of the tool in the window", "cpu", "less", " s"),
    ("Peak RSS (VmHWM, whole run)", "rss_mib", "lighter", " MiB"),
]

SCENARIOS = [
    ("canary", "1. Replica-ratio canary: setWeight 20 → pause 0 → 50 → pause 0 → 100", [
        ("20% step (from the image change)", "step0", "faster", " s"),
        ("pause 0", "step1", "faster", " s"),
        ("50% step", "step2", "faster", " s"),
        ("pause 0", "step3", "faster", " s"),
        ("100% step", "step4", "faster", " s"),
        ("promotion after the last step", "promotion", "faster", " s"),
        ("**image change → fully promoted**", "total", "faster", " s"),
    ]),
    ("analysis", "2a. Canary with an analysis step that passes: setWeight 20 → analysis → 50 → pause 0 → 100", [
        ("20% step (from the image change)", "step0", "faster", " s"),
        ("analysis step", "step1", "faster", " s"),
        ("50% step", "step2", "faster", " s"),
        ("**image change → fully promoted**", "total", "faster", " s"),
    ]),
    ("abort", "2b. The same canary, the analysis fails: abort", [
        ("image change → analysis failed", "to_failed", "faster", " s"),
        ("**analysis failed → traffic back on stable**", "back", "faster", " s"),
        ("image change → back on stable", "total", "faster", " s"),
    ]),
    ("bluegreen", "3. Blue-green, automatic promotion", [
        ("**image change → active Service switched**", "switch", "faster", " s"),
        ("image change → old version scaled down (delay 5 s)", "total", "faster", " s"),
    ]),
]


# What the per-run request counters (kept in target/bench/rollouts-<mode>/<scenario>-<tool>-<run>/
# requests-{before,after}.txt) and the tools' logs show about the rows where ferry is behind; the
# mechanisms, not the figures, so it holds for any run.
WHY = [
    "Where ferry is behind, and why (from the request counters by verb and resource and the "
    "tools' logs kept beside each run in `target/bench/rollouts-<mode>/`):",
    "",
    "- **Blue-green's finish and the API server's count.** When the scale-down delay ends ferry "
    "gives the primary Deployment the new template, as Git has it, and removes the new-version "
    "Deployment once the primary runs it at full size: a second rolling update of every replica "
    "(the API server sees twice the Pod creations and deletions, plus the Deployment controller's "
    "status writes and Events). The new version's pods carry labels apart from Git's, so that the "
    "active Service as in Git does not select them before the switch; so their ReplicaSet is not "
    "one the primary would adopt, as a replica-ratio canary's is (promotion there hands the "
    "canary's ReplicaSet to the paused primary: no pod is replaced). Argo Rollouts has no "
    "Deployment: its Services select by `rollouts-pod-template-hash`, and promotion relabels the "
    "new ReplicaSet as stable and scales the old one to 0.",
    "- **The canaries' API-server count** includes, for ferry, two Deployments (the primary and "
    "the canary) whose controller writes each one's status and Events, where Argo Rollouts writes "
    "one Rollout's status; Argo in turn lists Pods on most passes. ferry's own requests are the "
    "fewer: it reads the rollout's Deployments from a watch of whole Deployments, and applies the "
    "canary only when it changes.",
    "- **The analysis step.** Argo Rollouts keeps measurement times in whole seconds, so with "
    "`interval: 1s` its second measurement comes 0–1 s after the first (its log: \"Enqueueing "
    "analysis after 328ms\"); ferry waits the full second. With the usual intervals (30 s and "
    "more) the difference is noise. The same whole-second rounding makes Argo's 5 s scale-down "
    "delay 4–5 s.",
    "- **The first step** includes, for ferry, fetching the new commit and rendering it (about "
    "0.1–0.2 s in its log, from the reconcile request to the rollout's start); Argo's starts from "
    "the patched Rollout.",
    "- **Pauses of 0 s** take ferry no time: it walks through them in the pass that reaches them; "
    "Argo Rollouts writes a Paused status and resumes on its next pass (about 0.2 s each).",
]


def section(meta, s):
    lines = [BEGIN, "## Progressive delivery beside Argo Rollouts", ""]
    runs = meta.get("runs", "?")
    lines += [
        f"`benches/rollouts.sh {meta.get('mode')}`, run on {meta.get('started')} "
        f"on this {meta.get('nproc')}-core machine (load average {meta.get('load')} at the start), "
        f"{runs} run{'s' if runs != '1' else ''} per scenario and tool: medians (min–max). "
        f"{meta.get('ferry_version')} beside Argo Rollouts {meta.get('argo_version')} (its controller "
        "built from the `github.com/argoproj/argo-rollouts` Go module), each alone as a local process, "
        "freshly started and scoped to a fresh namespace (ferry `--namespace`, Argo Rollouts "
        "`--namespaced`), on the same local control plane, where one kwok node makes Pods Ready.",
        "",
        f"The workload is the same for both: {meta.get('replicas')} replicas of one container, a "
        "Service selecting them (and a preview Service for blue-green); a ferry Application (a "
        "Deployment in Git, `spec.strategy`) against an Argo `Rollout` with the same steps. No traffic "
        "router: the canary's share is its share of the replicas. The new image reaches ferry as a "
        "Git commit (pushed before the clock starts; the clock starts at the `ferry.dev/reconcile-at` "
        "annotation `ferry sync` sets, so Git polling is not counted, but ferry's fetch of the new "
        "commit and its render are); it reaches Argo Rollouts as a `kubectl patch` of the Rollout's "
        "image (as Argo CD would apply it, whose own detection and sync are not counted). Step times "
        "come from each tool's status (ferry `status.rollout.step`/`phase`, Argo "
        "`status.currentStepIndex`/`stableRS`): a step lasts from the status reaching it to the "
        "status leaving it, which both tools do only once the step's replicas are available; "
        "\"fully promoted\" also waits for the new version at full size and the old one at 0.",
        "",
        f"Analysis: the same Prometheus (Debian's, scrape interval 1 s) and the same query "
        f"(`{meta.get('query')}`, a gauge a local exporter serves: {meta.get('good')} in 2a, "
        f"{meta.get('bad')} in 2b), successCondition `result < 0.05` (Argo `result[0] < 0.05`), "
        f"interval {meta.get('interval')}, count {meta.get('count')}, failureLimit 0, for both. "
        "\"Traffic back on stable\": the stable version at full size and available and no canary "
        "pod left (ferry deletes its canary Deployment; Argo scales the canary ReplicaSet to 0). "
        "Blue-green: `autoPromotion: true` / `autoPromotionEnabled: true`, scale-down delay 5 s for "
        "both; the switch is the active Service's selector changing.",
        "",
        "API requests and CPU cover the window from the image change to the end of the scenario; "
        "the API server's count includes the kube-controller-manager's and kwok's work on the "
        "ReplicaSets and Pods (ferry drives Deployments, Argo Rollouts ReplicaSets directly). "
        "Ratios are Argo Rollouts / ferry of the medians: above 1 ferry is faster or lighter.",
        "",
    ]
    for key, title, rows in SCENARIOS:
        if f"{key}.ferry.total" not in s and f"{key}.argo.total" not in s:
            continue
        lines += [f"### {title}", "", "| | ferry | Argo Rollouts | Argo / ferry |", "|---|---|---|---|"]
        for label, metric, better, unit in rows + COMMON_ROWS:
            f, a = s.get(f"{key}.ferry.{metric}", []), s.get(f"{key}.argo.{metric}", [])
            if not f and not a:
                continue
            lines.append(f"| {label} | {spread(f, unit)} | {spread(a, unit)} | {ratio(median(a), median(f), better)} |")
        lines.append("")
    lines += WHY + [""]
    note = meta.get("note", "")
    if note:
        lines += [note, ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def put_section(report_path, text):
    """Replaces this bench's section of the report with TEXT, or appends it."""
    try:
        with open(report_path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    b, e = old.find(BEGIN), old.find(END)
    if b >= 0 and e > b:
        new = old[:b] + text.rstrip("\n") + old[e + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text if old else text
    with open(report_path, "w") as f:
        f.write(new)


def main():
    if sys.argv[1] == "measure":
        scenario, tool, directory, t0, replicas, steps = sys.argv[2:8]
        out = measure(scenario, tool, directory, float(t0), int(replicas), int(steps))
        if out is None:
            sys.exit(3)
        for k, v in out.items():
            print(f"{k} {v:.3f}")
        return
    if sys.argv[1] == "section":
        meta, samples = read_meta(sys.argv[2]), read_samples(sys.argv[3])
        text = section(meta, samples)
        with open(sys.argv[4], "w") as f:
            f.write(text)
        if len(sys.argv) > 5:
            put_section(sys.argv[5], text)
        return
    sys.exit(f"usage: {sys.argv[0]} measure|section ...")


if __name__ == "__main__":
    main()
