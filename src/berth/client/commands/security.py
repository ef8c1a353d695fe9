"""berth audit, berth image scan: berth's own security reports (GET
/berth/audit, POST /berth/images/{name}/scan).

Both print a table, then how to fix each finding, then a summary line;
--format json prints the daemon's whole answer; a Go template is applied
to each check / finding. The exit status gates CI pipelines: audit exits 1
when a check FAILs (--fail-on warn: also on WARN), scan exits 1 when a
finding reaches --fail-on (default high); 0 otherwise."""
from berth.client.commands import Exit

AUDIT_TABLE = "table {{.ID}}\t{{.Result}}\t{{.Level}}\t{{.Target}}\t{{.Title}}"
SCAN_TABLE = "table {{.Severity}}\t{{.Kind}}\t{{.Where}}\t{{.Detail}}"
SEVERITIES = ("high", "medium", "low", "info")


def _fail_on(value, choices, default):
    v = (value or default).lower()
    if v not in choices:
        from berth.client.args import UsageError
        raise UsageError(f"invalid argument {value!r} for \"--fail-on\" flag: "
                         f"one of {', '.join(choices)}")
    return v


def cmd_audit(ctx, argv):
    from berth.client.format import indent_json, render
    o, _ = ctx.parse(argv, "audit", max_args=0)
    fail_on = _fail_on(o["fail_on"], ("fail", "warn"), "fail")
    levels = sorted({x for v in o["level"] for x in v.split(",") if x})
    for lv in levels:
        if lv not in ("daemon", "image", "container"):
            from berth.client.args import UsageError
            raise UsageError(f'invalid argument "{lv}" for "--level" flag: one of daemon, '
                             "image, container")
    # the daemon filters the checks and scores those alone
    report = ctx.client.get("/berth/audit", all=o["all"] or None,
                            images=0 if o["no_images"] else None,
                            level=",".join(levels) or None)
    checks = [c for c in report.get("Checks") or [] if not levels or c.get("Level") in levels]
    bad = {"FAIL"} | ({"WARN"} if fail_on == "warn" else set())
    code = 1 if any(c.get("Result") in bad for c in checks) else 0
    if o["format"] == "json":
        ctx.out.write(indent_json(dict(report, Checks=checks)) + "\n")
        raise Exit(code)
    if o["format"] and o["format"] != "table":
        ctx.out.write(render(checks, o["format"], AUDIT_TABLE, kind="check"))
        raise Exit(code)
    shown = [c for c in checks if c.get("Result") != "PASS"] if o["quiet"] else checks
    rows = [dict(c, Target=_cut(str(c.get("Target", "")), 40)) for c in shown]
    if rows:
        ctx.out.write(render(rows, None, AUDIT_TABLE))
    fixes = [c for c in shown if c.get("Result") in ("FAIL", "WARN") and c.get("Fix")]
    if fixes:
        ctx.out.write("\nFindings and fixes:\n")
        for c in fixes:
            ctx.out.write(f"[{c['Result']}] {c['ID']} {c['Target']}: {c['Title']}\n"
                          f"    found: {c.get('Detail', '')}\n    fix:   {c['Fix']}\n")
    s = report.get("Summary") or {}
    ctx.out.write(f"\nScore: {report.get('Score', 0)}/100 ({s.get('PASS', 0)} passed, "
                  f"{s.get('WARN', 0)} warnings, {s.get('FAIL', 0)} failed, "
                  f"{s.get('INFO', 0)} info)" + (f" for the {', '.join(levels)} checks" if levels
                                                 else "") + "\n")
    if report.get("Benchmark"):
        ctx.out.write(f"Check IDs: {report['Benchmark']}\n")
    raise Exit(code)


def cmd_scan(ctx, argv):
    """berth image scan IMAGE [IMAGE...]"""
    from berth.client.api import APIError
    from berth.client.format import indent_json, render
    o, args = ctx.parse(argv, "image scan", min_args=1)
    fail_on = _fail_on(o["fail_on"], SEVERITIES + ("none",), "high")
    show = _fail_on(o["severity"], SEVERITIES, "info")
    reports, code, failed = [], 0, False
    for name in args:
        try:
            r = ctx.client.post(f"/berth/images/{name}/scan")
        except APIError as e:
            ctx.daemon_error(e)
            failed = True
            continue
        findings = [f for f in r.get("Findings") or []
                    if _rank(f.get("Severity")) <= SEVERITIES.index(show)]
        if fail_on != "none" and any(_rank(f.get("Severity")) <= SEVERITIES.index(fail_on)
                                     for f in r.get("Findings") or []):
            code = 1
        reports.append((name, r, findings))
    if o["format"] == "json":
        out = [dict(r, Findings=f) for _, r, f in reports]
        ctx.out.write(indent_json(out[0] if len(out) == 1 else out) + "\n")
    elif o["format"] and o["format"] != "table":
        for _, r, f in reports:
            ctx.out.write(render([dict(x, Image=r.get("Image")) for x in f], o["format"], SCAN_TABLE,
                                 kind="finding"))
    else:
        for i, (name, r, findings) in enumerate(reports):
            if i:
                ctx.out.write("\n")
            _scan_report(ctx, name, r, findings, o["quiet"])
    raise Exit(1 if failed or code else 0)


def _scan_report(ctx, name, r, findings, quiet):
    from berth.client.format import render
    image = (r.get("Image") or "").split(":", 1)[-1][:12]
    s = r.get("Summary") or {}
    if not quiet:
        ctx.out.write(f"{name} ({image}): {s.get('Files', '?')} files in "
                      f"{s.get('Layers', '?')} layer(s)\n")
        if findings:
            rows = [dict(f, Where=f.get("Path") or "config", Detail=_cut(f.get("Detail", ""), 70))
                    for f in findings]
            ctx.out.write(render(rows, None, SCAN_TABLE))
            fixes = {}
            for f in findings:
                if f.get("Fix") and f.get("Severity") != "INFO":
                    fixes.setdefault((f["Kind"], f["Fix"]), f)
            if fixes:
                ctx.out.write("\nFixes:\n")
                for (kind, fix), f in fixes.items():
                    ctx.out.write(f"[{f['Severity']}] {kind} {f.get('Path') or ''}".rstrip()
                                  + f": {fix}\n")
        else:
            ctx.out.write("no findings\n")
    ctx.out.write(f"{name}: {s.get('HIGH', 0)} high, {s.get('MEDIUM', 0)} medium, "
                  f"{s.get('LOW', 0)} low, {s.get('INFO', 0)} info\n")


def _rank(sev):
    sev = (sev or "").lower()
    return SEVERITIES.index(sev) if sev in SEVERITIES else len(SEVERITIES)


def _cut(s, n):
    return s if len(s) <= n else s[:n - 1] + "…"


# the names the dispatcher may call: `berth audit` and `berth image scan`
audit = cmd_audit
image_scan = cmd_scan
