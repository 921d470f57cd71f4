"""The plan for people: short, aligned, readable (`--format=text`)."""

from __future__ import annotations

import json

from claude_bottle.plan import Plan


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"  {k.ljust(width)}  {v}" for k, v in rows]


def plan_text(plan: Plan) -> str:
    egress = json.loads(plan.egress_json)
    lines = [f"bottle {plan.name}  (runtime {plan.runtime}, session {plan.session})", ""]
    lines += _rows(
        [
            ("manifest", plan.manifest_path),
            ("workspace", plan.workspace or "(none mounted)"),
            ("agent", f"{plan.agent_image}  {' '.join(plan.agent_command)}"),
            ("user", plan.agent_user),
            ("limits", f"memory {plan.resources.memory}, pids {plan.resources.pids}"
                       + (f", cpus {plan.resources.cpus:g}" if plan.resources.cpus else "")),
            ("proxy", plan.proxy_url + (f"  (relayed to the bundle's {plan.proxy_socket})" if plan.proxy_socket else "")),
            ("sidecars", plan.sidecars_image),
        ]
    )
    lines += ["", "egress (host: ports)"]
    gates = egress["port_gates"]
    if gates:
        lines += _rows([(("*." if g["wildcard"] else "") + g["host"], ", ".join(map(str, g["ports"]))) for g in gates])
    else:
        lines.append("  (nothing: every outbound connection is refused)")
    lines += _secrets_and_dlp(plan)
    if egress["ssrf_allow"]:
        lines += ["", "private addresses opened", *(f"  {c}" for c in egress["ssrf_allow"])]
    if plan.bundle_ip:
        subnet = plan.bundle_subnet or ""
        if plan.bundle_subnet_moved_from:
            subnet += f"  (moved off {plan.bundle_subnet_moved_from}: taken on this host)"
        lines += ["", "bundle", *_rows([("subnet", subnet), ("ip", plan.bundle_ip)])]
    lines += ["", "would create"]
    created = [("network", n.name) for n in plan.networks]
    created += [("container", f"{c.name}  ({c.role}, {_network(plan, c.networks)})") for c in plan.containers]
    if plan.vm_name:
        created.append(("microvm", plan.vm_name))
    lines += _rows(created)
    return "\n".join(lines) + "\n"


def _network(plan: Plan, networks: tuple[str, ...]) -> str:
    if not networks:
        return "no network"
    ours = {n.name for n in plan.networks}
    return ", ".join(f"on {n}" if n in ours else f"joins {n}" for n in networks)


def _secrets_and_dlp(plan: Plan) -> list[str]:
    """Which secrets the agent holds as placeholders (never values), and the DLP mode of each host."""
    dlp = json.loads(plan.bundle_policy)["dlp"]
    lines = ["", f"request DLP (gitleaks): {dlp['default']} by default"]
    if dlp["hosts"]:
        lines += _rows([(("*." if h["wildcard"] else "") + h["host"], h["mode"]) for h in dlp["hosts"]])
    if plan.secrets:
        lines += ["", "secrets (the agent holds a placeholder; the bundle swaps in the value)"]
        rows = []
        for p in plan.secrets:
            s = p.secret
            source = f"${s.ref}" if s.source == "env" else s.ref
            rows.append((s.name, f"{source} -> header {s.header} to {', '.join(s.hosts)}"
                                 + ("  (implicit)" if s.implicit else "")))
        lines += _rows(rows)
    return lines
