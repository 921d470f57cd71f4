#!/usr/bin/env python3
"""The bundle's mitmdump: mitmproxy's proxy core with the bundle's addon, and none of its other addons.

mitmdump loads every default addon, and importing them pulls in flask (the mitm.it onboarding app),
ldap3 and passlib (proxy authentication): more than half of its start-up, and code the bundle never
runs. Then it makes its CA with a fresh RSA-2048 key, another 0.3 s. This entry point loads only what
the bundle uses (the proxy server, TLS interception, layer choice, option checks, the log) plus the
addon, and makes the session's CA with an ECDSA P-256 key when the confdir has none.

Same argv as mitmdump, for the options the bundle and its tests use:
    proxy.py [--mode MODE] [--listen-host HOST] [-p PORT] [--set NAME=VALUE ...] -s ADDON.py
An unknown option, or an addon that fails to import, ends the process: nothing listens without the
addon (mitmdump's own script loader logs the error and serves on, unguarded).
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import os
import signal
import sys
import types
from pathlib import Path

CA_BASENAME = "mitmproxy"  # mitmproxy's CONF_BASENAME: the file names its CertStore looks for
CA_VALID_DAYS = 397  # a session CA outlives no session; mitmproxy's own lasts ten years
USAGE = "usage: proxy.py [--mode MODE] [--listen-host HOST] [-p PORT] [--set NAME=VALUE ...] -s ADDON.py"


def parse_args(argv: list[str]) -> tuple[list[str], str]:
    """mitmdump's spelling of the options we use -> (["name=value", ...], addon path)."""
    flags = {"--mode": "mode", "--listen-host": "listen_host", "-p": "listen_port", "--listen-port": "listen_port"}
    specs: list[str] = []
    addon = ""
    args = iter(argv)
    for arg in args:
        value = next(args, None)
        if value is None:
            raise ValueError(f"{arg} needs a value")
        if arg in flags:
            specs.append(f"{flags[arg]}={value}")
        elif arg == "--set" and "=" in value:
            specs.append(value)
        elif arg == "-s" and not addon:
            addon = value
        else:
            raise ValueError(f"unsupported argument {arg} {value}")
    if not addon:
        raise ValueError("-s ADDON.py is required: the bundle never proxies without its addon")
    return specs, addon


def without_default_addons() -> None:
    """Make `mitmproxy.addons.X` import X alone: the package's __init__ imports every default addon."""
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("mitmproxy.addons not found")
    package = types.ModuleType("mitmproxy.addons")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules.setdefault("mitmproxy.addons", package)


def ensure_ca(confdir: Path) -> None:
    """The session CA, in the files and format mitmproxy's CertStore reads (key and cert in
    mitmproxy-ca.pem, the public half in mitmproxy-ca-cert.pem), with mitmproxy's extensions."""
    key_file = confdir / f"{CA_BASENAME}-ca.pem"
    if key_file.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "claude-bottle session CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "claude-bottle")])
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    cert = (x509.CertificateBuilder().serial_number(x509.random_serial_number())
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            # mitmproxy's allowance for clocks that disagree (a microVM's, a cluster node's)
            .not_valid_before(now - datetime.timedelta(days=2))
            .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    confdir.mkdir(parents=True, exist_ok=True)
    partial = key_file.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private + pem)
    (confdir / f"{CA_BASENAME}-ca-cert.pem").write_bytes(pem)
    os.replace(partial, key_file)  # last: a CA file that exists is a whole one


def load_addon(path: str) -> types.ModuleType:
    """The addon as mitmdump's `-s` loads it (its directory on sys.path for its siblings), but any
    exception it raises ends the process instead of being logged and forgotten."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("__mitmproxy_script__.addon", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def serve(specs: list[str], addon: str) -> None:
    from mitmproxy import exceptions, hooks, master, options
    from mitmproxy.addons import core, disable_h2c, errorcheck, next_layer, proxyserver, termlog, tlsconfig

    opts = options.Options()
    proxy = master.Master(opts)
    # Options of mitmproxy's core now (confdir among them), the addons' own as each addon registers.
    opts.set(*specs, defer=True)
    ensure_ca(Path(os.path.expanduser(opts.confdir)))  # before TlsConfig would make an RSA one
    # mitmdump's order, less the addons left out: a script's hooks run where its ScriptLoader sits,
    # after the proxy server's and before mitmproxy's own layer choice and TLS settings.
    proxy.addons.add(termlog.TermLog(), core.Core(), disable_h2c.DisableH2C(), proxyserver.Proxyserver(),
                     load_addon(addon), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                     errorcheck.ErrorCheck(log_to_stderr=True))
    if opts.deferred:
        raise exceptions.OptionsError(f"unknown options: {', '.join(sorted(opts.deferred))}")
    # What mitmdump's start-up does after parsing its options: every addon configures on all of them.
    proxy.addons.trigger(hooks.ConfigureHook(set(opts.keys())))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: loop.call_soon_threadsafe(proxy.shutdown))
    await proxy.run()


def main(argv: list[str]) -> int:
    try:
        specs, addon = parse_args(argv)
    except ValueError as e:
        print(f"proxy.py: {e}\n{USAGE}", file=sys.stderr)
        return 2
    without_default_addons()
    from mitmproxy import exceptions

    try:
        asyncio.run(serve(specs, addon))
    except exceptions.OptionsError as e:
        print(f"proxy.py: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
