"""Unit tests for the smolmachines runtime: preflight decisions, argv, parsing, the executor's order and
cleanup (with a scripted runner), and the fake smolvm's faithfulness. No Docker, no KVM."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import unittest
from contextlib import redirect_stderr
from typing import Callable, Sequence
from unittest import mock

from claude_bottle import audit, manifest as manifest_mod, paths, plan as plan_mod, smolvm, smolvm_argv as argv
from claude_bottle.errors import EXIT_LAUNCHER, BottleError, Interrupted, RuntimeFailure
from claude_bottle.manifest import Resources
from claude_bottle.runner import Result, SubprocessRunner
from tests import fakes
from tests.fakes.runner import PEM, FakeRunner as ScriptedRunner, docker_default, ok

def start(manifest: manifest_mod.Manifest, command: tuple[str, ...], runner: ScriptedRunner, state: str) -> int:
    """What `start` does for smolmachines, with the state directory given."""
    plan = plan_mod.build(manifest, os.urandom(4).hex(), command=command, state_dir=state,
                          taken_subnets=smolvm.taken_subnets(runner))
    return smolvm.start(plan, {}, runner, False, state)


def versioned(version_line: str, rc: int = 0) -> ScriptedRunner:
    return ScriptedRunner(lambda a: (rc, version_line, "") if a == ["smolvm", "--version"] else None)


def make_manifest(folder: str, **agent: object) -> manifest_mod.Manifest:
    workspace = os.path.join(folder, "ws")
    os.makedirs(workspace, exist_ok=True)
    doc = {"version": 1, "name": "demo-vm", "runtime": "smolmachines", "workspace": "ws",
           "agent": {"image": "example/agent:1", "command": ["claude"], **agent},
           "egress": {"allow": ["api.anthropic.com"]}, "resources": {"memory": "2g", "cpus": 1.5}}
    return manifest_mod.parse(doc, os.path.join(folder, "bottle.json"))


class PreflightTest(unittest.TestCase):
    def setUp(self) -> None:
        patcher = mock.patch.object(smolvm, "check_hypervisor")
        self.hypervisor = patcher.start()
        self.addCleanup(patcher.stop)

    def refused(self, runner: ScriptedRunner, allow_unsafe: bool = False) -> RuntimeFailure:
        with self.assertRaises(RuntimeFailure) as caught:
            smolvm.preflight(runner, allow_unsafe)
        self.assertEqual(caught.exception.exit_code, EXIT_LAUNCHER)
        return caught.exception

    def test_smolvm_missing(self) -> None:
        error = self.refused(versioned("", rc=127))
        self.assertIn("smolvm: command not found", str(error))

    def test_version_unreadable(self) -> None:
        for line in ("smolvm\n", "", "smolvm dev-build\n"):
            with self.subTest(line=line):
                self.assertIn("could not read smolvm's version", str(self.refused(versioned(line))))

    def test_before_1_1_3_both_defects(self) -> None:
        for version in ("0.8.0", "0.8.1", "1.0.9", "1.1.2"):
            with self.subTest(version=version):
                message = str(self.refused(versioned(f"smolvm {version}\n")))
                self.assertIn(f"smolvm {version} has known egress defects", message)
                self.assertIn("allowlist (allow_cidrs) is not enforced", message)
                self.assertIn("#427", message)
                self.assertIn("loopback", message)
                self.assertIn("--unsafe-allow-smolvm-egress-defects", message)
                self.assertIn("1.3.3 or later", message)
                self.hypervisor.assert_not_called()

    def test_from_1_1_3_before_1_3_3_loopback_only(self) -> None:
        for version in ("1.1.3", "1.2.0", "1.3.2"):
            with self.subTest(version=version):
                message = str(self.refused(versioned(f"smolvm {version}\n")))
                self.assertIn("loopback", message)
                self.assertIn("#510", message)
                self.assertNotIn("#427", message)

    def test_safe_versions_pass(self) -> None:
        for version in ("1.3.3", "1.4.0", "1.22.0", "2.0.0"):
            with self.subTest(version=version):
                runner = versioned(f"smolvm {version}\n")
                stderr = io.StringIO()
                with redirect_stderr(stderr):
                    got = smolvm.preflight(runner)
                self.assertEqual(argv.version_str(got), version)
                self.assertEqual(stderr.getvalue(), "")
                self.assertIn(["docker", "version", "--format", "{{.Server.Version}}"], runner.calls)
        self.assertEqual(self.hypervisor.call_count, 4)

    def test_override_runs_with_loud_warnings(self) -> None:
        for version, count in (("0.8.0", 2), ("1.3.2", 1)):
            with self.subTest(version=version):
                stderr = io.StringIO()
                with redirect_stderr(stderr):
                    got = smolvm.preflight(versioned(f"smolvm {version}\n"), allow_unsafe=True)
                self.assertEqual(argv.version_str(got), version)
                warnings = [line for line in stderr.getvalue().splitlines() if "WARNING" in line]
                self.assertEqual(len(warnings), count, stderr.getvalue())
                self.assertTrue(all("--unsafe-allow-smolvm-egress-defects" in w for w in warnings))

    def test_override_is_silent_on_safe_versions(self) -> None:
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            smolvm.preflight(versioned("smolvm 1.4.0\n"), allow_unsafe=True)
        self.assertEqual(stderr.getvalue(), "")

    def test_no_hypervisor_refuses_before_docker(self) -> None:
        self.hypervisor.side_effect = RuntimeFailure("/dev/kvm does not exist")
        runner = versioned("smolvm 1.4.0\n")
        self.assertIn("/dev/kvm", str(self.refused(runner)))
        self.assertFalse(any(c[0] == "docker" for c in runner.calls))

    def test_docker_unreachable(self) -> None:
        def handler(a: list[str]) -> tuple[int, str, str] | None:
            if a[:2] == ["docker", "version"]:
                return 1, "", "Cannot connect to the Docker daemon"
            return (0, "smolvm 1.4.0\n", "") if a[0] == "smolvm" else None

        self.assertIn("Docker daemon is not reachable", str(self.refused(ScriptedRunner(handler))))


class HypervisorTest(unittest.TestCase):
    def test_linux_without_kvm(self) -> None:
        with mock.patch("platform.system", return_value="Linux"), \
                mock.patch.object(smolvm, "KVM_PATH", "/nonexistent/kvm"):
            with self.assertRaises(RuntimeFailure) as caught:
                smolvm.check_hypervisor(ScriptedRunner())
        self.assertIn("/nonexistent/kvm does not exist", str(caught.exception))
        self.assertEqual(caught.exception.exit_code, EXIT_LAUNCHER)

    @unittest.skipIf(os.getuid() == 0, "root may open any device node")
    def test_linux_kvm_not_accessible(self) -> None:
        with tempfile.NamedTemporaryFile() as node:
            os.chmod(node.name, 0)
            with mock.patch("platform.system", return_value="Linux"), \
                    mock.patch.object(smolvm, "KVM_PATH", node.name):
                with self.assertRaises(RuntimeFailure) as caught:
                    smolvm.check_hypervisor(ScriptedRunner())
        self.assertIn("not readable and writable", str(caught.exception))

    def test_linux_kvm_accessible(self) -> None:
        with tempfile.NamedTemporaryFile() as node:
            os.chmod(node.name, stat.S_IRUSR | stat.S_IWUSR)
            with mock.patch("platform.system", return_value="Linux"), \
                    mock.patch.object(smolvm, "KVM_PATH", node.name):
                smolvm.check_hypervisor(ScriptedRunner())

    def test_macos_hypervisor_framework(self) -> None:
        with mock.patch("platform.system", return_value="Darwin"):
            runner = ScriptedRunner(lambda a: ok("1\n"))
            smolvm.check_hypervisor(runner)
            self.assertEqual(runner.calls, [["sysctl", "-n", "kern.hv_support"]])
            with self.assertRaises(RuntimeFailure):
                smolvm.check_hypervisor(ScriptedRunner(lambda a: ok("0\n")))

    def test_other_systems_refused(self) -> None:
        with mock.patch("platform.system", return_value="Windows"), self.assertRaises(RuntimeFailure):
            smolvm.check_hypervisor(ScriptedRunner())


class ArgvTest(unittest.TestCase):
    def test_spellings(self) -> None:
        self.assertEqual(argv.version(), ["smolvm", "--version"])
        self.assertEqual(argv.pack_create("img:1", "/c/agent"), ["smolvm", "pack", "create", "--image", "img:1",
                                                                 "-o", "/c/agent"])
        self.assertEqual(argv.machine_start("vm"), ["smolvm", "machine", "start", "--name", "vm"])
        self.assertEqual(argv.machine_stop("vm"), ["smolvm", "machine", "stop", "--name", "vm"])
        self.assertEqual(argv.machine_delete("vm"), ["smolvm", "machine", "delete", "vm", "-f"])
        self.assertEqual(argv.machine_ls(), ["smolvm", "machine", "ls", "--json"])

    def test_create(self) -> None:
        got = argv.machine_create("vm", "/a.smolmachine", "/s.smolfile", ["/ca:/etc/claude-bottle:ro"],
                                  Resources("2g", 100, 1.5))
        self.assertEqual(got, ["smolvm", "machine", "create", "vm", "--from", "/a.smolmachine", "--smolfile",
                               "/s.smolfile", "--mem", "2048", "--cpus", "2", "-v", "/ca:/etc/claude-bottle:ro"])
        self.assertNotIn("--cpus", argv.machine_create("vm", "a", "s", [], Resources("4g", 100, None)))

    def test_exec(self) -> None:
        self.assertEqual(argv.machine_exec("vm", ("claude", "-p", "--x"), tty=False, workdir="/workspace"),
                         ["smolvm", "machine", "exec", "--name", "vm", "-i", "-w", "/workspace", "--", "claude",
                          "-p", "--x"])
        self.assertEqual(argv.machine_exec("vm", ("sh",), tty=True, workdir=None),
                         ["smolvm", "machine", "exec", "--name", "vm", "-i", "-t", "--", "sh"])

    def test_memory_mib(self) -> None:
        for text, mib in (("4g", 4096), ("512m", 512), ("1048576k", 1024), ("1", 1), ("3G", 3072)):
            self.assertEqual(argv.memory_mib(text), mib, text)


class ParsingTest(unittest.TestCase):
    def test_version(self) -> None:
        self.assertEqual(argv.parse_version("smolvm 1.4.0\n"), (1, 4, 0))
        self.assertEqual(argv.parse_version("smolvm 0.8.1-dev (abc)\n"), (0, 8, 1))
        self.assertIsNone(argv.parse_version("smolvm\n"))
        self.assertEqual(argv.defects((1, 3, 3)), [])
        self.assertEqual(len(argv.defects((0, 8, 0))), 2)

    def test_machine_ls(self) -> None:
        text = json.dumps([
            {"name": "claude-bottle-demo-vm-0123abcd-vm", "state": "running"},
            {"name": "claude-bottle-x-deadbeef-vm", "state": "stopped"},
            {"name": "someone-elses-vm", "state": "running"},
            {"name": "claude-bottle-demo-XYZ-vm", "state": "running"},
        ])
        vms = argv.parse_machine_ls(text)
        self.assertEqual([(v.bottle, v.session, v.state) for v in vms],
                         [("demo-vm", "0123abcd", "running"), ("x", "deadbeef", "stopped")])
        self.assertEqual(argv.parse_machine_ls("[]"), [])

    def test_vm_name_round_trip_with_plan(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            plan = plan_mod.build(make_manifest(folder), "0123abcd", state_dir=folder)
        vms = argv.parse_machine_ls(json.dumps([{"name": plan.vm_name, "state": "running"}]))
        self.assertEqual((vms[0].bottle, vms[0].session), ("demo-vm", "0123abcd"))

    def test_routes(self) -> None:
        ip_json = json.dumps([
            {"dst": "default", "gateway": "192.0.2.1"}, {"dst": "172.17.0.0/16"},
            {"type": "local", "dst": "127.0.0.1"}, {"dst": "192.168.77.0/24"},
        ])
        self.assertEqual(argv.parse_ip_json_routes(ip_json), ["172.17.0.0/16", "127.0.0.1/32", "192.168.77.0/24"])
        proc = ("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
                "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
                "wg0\t0042A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
        self.assertEqual(argv.parse_proc_net_route(proc), ["172.17.0.0/16", "192.168.66.0/24"])
        netstat = ("Routing tables\n\nInternet:\nDestination        Gateway            Flags\n"
                   "default            192.168.1.1        UGScg\n127                127.0.0.1          UCS\n"
                   "192.168.1          link#11            UCS\n192.168.64/24      link#20            UC\n"
                   "192.168.1.5        a:b:c:d:e:f        UHLWI\n")
        self.assertEqual(argv.parse_netstat_routes(netstat),
                         ["127.0.0.0/8", "192.168.1.0/24", "192.168.64.0/24", "192.168.1.5/32"])

    def test_taken_subnets_reach_the_plan(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            manifest = make_manifest(folder)
            first = plan_mod.build(manifest, "0123abcd", state_dir=folder).bundle_subnet
            assert first is not None

            def handler(a: list[str]) -> tuple[int, str, str] | None:
                if a[:3] == ["docker", "network", "ls"]:
                    return ok("n1\nn2\n")
                if a[:3] == ["docker", "network", "inspect"]:
                    return ok("172.18.0.0/16 " if a[-1] == "n1" else f"{first} fd00::/64 ")
                if a[:2] == ["ip", "-j"]:
                    return ok(json.dumps([{"dst": "default"}, {"dst": "10.9.0.0/16"}]))
                return None

            with mock.patch("platform.system", return_value="Linux"):
                taken = smolvm.taken_subnets(ScriptedRunner(handler))
            self.assertEqual(taken, ("172.18.0.0/16", first, "fd00::/64", "10.9.0.0/16"))
            moved = plan_mod.build(manifest, "0123abcd", state_dir=folder, taken_subnets=taken)
            self.assertNotEqual(moved.bundle_subnet, first)
            self.assertIn(f"{moved.bundle_ip}/32", moved.smolfile or "")


class ExecutorTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.state = os.path.join(self.folder, "state")
        self.plan = plan_mod.build(make_manifest(self.folder), "0123abcd", state_dir=self.state)
        self.smolfile_path, self.ca_dir = paths.smolvm_session_files(self.state, "demo-vm", "0123abcd")
        self.assertEqual(self.smolfile_path, self.plan.smolfile_path)
        self.seen: dict[str, object] = {}

    def handler(self, fail_create: tuple[int, str, str] | None = None) -> Callable[[list[str]], object]:
        def answer(a: list[str]) -> tuple[int, str, str] | None:
            if a[:3] == ["smolvm", "machine", "create"]:
                volume = a[a.index("-v") + 1]
                with open(os.path.join(volume.split(":")[0], "ca.pem"), encoding="ascii") as handle:
                    self.seen["ca"] = handle.read()
                with open(a[a.index("--smolfile") + 1], encoding="utf-8") as handle:
                    self.seen["smolfile"] = handle.read()
                self.seen["ca_mode"] = stat.S_IMODE(os.stat(volume.split(":")[0]).st_mode)
                return fail_create
            return None

        return answer

    def assertCleanedUp(self, runner: ScriptedRunner, after: int) -> None:
        stop = runner.index(["smolvm", "machine", "stop"])
        delete = runner.index(["smolvm", "machine", "delete"])
        docker_rm = runner.index(["docker", "ps", "--all", "--quiet"])
        self.assertLess(after, stop)
        self.assertLess(stop, delete)
        self.assertLess(delete, docker_rm)  # the VM goes before the bundle and its network
        self.assertFalse(os.path.exists(self.smolfile_path))
        self.assertFalse(os.path.exists(self.ca_dir))

    def test_happy_path_order_and_exit_status(self) -> None:
        runner = ScriptedRunner(self.handler(), attach=lambda a: 7)
        code = smolvm.execute(self.plan, runner, "/cache/a.smolmachine", self.state, {})
        self.assertEqual(code, 7)
        self.assertEqual(self.seen["ca"], PEM)
        self.assertEqual(self.seen["smolfile"], self.plan.smolfile)
        self.assertEqual(self.seen["ca_mode"], 0o755)
        bundle = runner.index(["docker", "start"])
        create = runner.index(["smolvm", "machine", "create"])
        start = runner.index(["smolvm", "machine", "start"])
        exec_ = runner.index(["smolvm", "machine", "exec"])
        self.assertLess(bundle, create)
        self.assertLess(create, start)
        self.assertLess(start, exec_)
        self.assertEqual(runner.calls[create][3:6], [self.plan.vm_name, "--from", "/cache/a.smolmachine"])
        self.assertIn(f"{self.ca_dir}:/run/claude-bottle/bundle:ro", runner.calls[create])
        self.assertIn(f"{self.plan.workspace}:/workspace", runner.calls[create])
        self.assertEqual(runner.calls[exec_][-2:], ["--", "claude"])
        self.assertCleanedUp(runner, exec_)

    def test_failed_create_still_cleans_up(self) -> None:
        runner = ScriptedRunner(self.handler((1, "", "Error: boom")))
        with self.assertRaises(BottleError) as caught:
            smolvm.execute(self.plan, runner, "/cache/a.smolmachine", self.state, {})
        self.assertIn("creating the microVM failed: Error: boom", str(caught.exception))
        self.assertCleanedUp(runner, runner.index(["smolvm", "machine", "create"]))

    def test_from_smolfile_conflict_fails_closed(self) -> None:
        clap = "error: the argument '--from <PATH>' cannot be used with '--smolfile <PATH>'\n\nUsage: ..."
        runner = ScriptedRunner(self.handler((2, "", clap)))
        with self.assertRaises(RuntimeFailure) as caught:
            smolvm.execute(self.plan, runner, "/cache/a.smolmachine", self.state, {})
        self.assertIn("without its network allowlist", str(caught.exception))
        self.assertCleanedUp(runner, runner.index(["smolvm", "machine", "create"]))

    def test_signal_during_the_agent(self) -> None:
        def interrupted(a: list[str]) -> int:
            raise Interrupted(signal.SIGTERM)

        runner = ScriptedRunner(self.handler(), attach=interrupted)
        with redirect_stderr(io.StringIO()):
            code = smolvm.execute(self.plan, runner, "/cache/a.smolmachine", self.state, {})
        self.assertEqual(code, 128 + signal.SIGTERM)
        self.assertCleanedUp(runner, runner.index(["smolvm", "machine", "exec"]))
        self.assertEqual(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)

    def test_vm_that_will_not_go_is_reported(self) -> None:
        def handler(a: list[str]) -> tuple[int, str, str] | None:
            if a[:3] == ["smolvm", "machine", "delete"]:
                return 1, "", "Error: busy"
            if a[:3] == ["smolvm", "machine", "ls"]:
                return ok(json.dumps([{"name": self.plan.vm_name, "state": "stopped"}]))
            return self.handler()(a)  # type: ignore[return-value]

        stderr = io.StringIO()
        with redirect_stderr(stderr):
            smolvm.execute(self.plan, ScriptedRunner(handler), "/cache/a.smolmachine", self.state, {})
        self.assertIn(f"cleanup: removing microVM {self.plan.vm_name} failed: Error: busy", stderr.getvalue())

    def test_remove_vm_is_quiet_when_gone_or_smolvm_missing(self) -> None:
        smolvm.remove_vm(ScriptedRunner(lambda a: (1, "", "not found") if "delete" in a else ok("[]")), "vm")
        smolvm.remove_vm(ScriptedRunner(lambda a: (127, "", "smolvm: command not found")), "vm")
        self.assertEqual(smolvm.list_vms(ScriptedRunner(lambda a: (127, "", ""))), [])


class ArtifactTest(unittest.TestCase):
    def setUp(self) -> None:
        self.cache = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.cache, True)

    def packer(self, fail: bool = False) -> ScriptedRunner:
        def handler(a: list[str]) -> tuple[int, str, str] | None:
            if a[:3] == ["smolvm", "pack", "create"]:
                if fail:
                    return 1, "", "Error: pull image: denied"
                out = a[a.index("-o") + 1]
                for path in (out, out + ".smolmachine"):
                    with open(path, "w", encoding="ascii") as handle:
                        handle.write("packed")
                return ok()
            return None

        return ScriptedRunner(handler)

    def test_packed_once_per_image_id(self) -> None:
        runner = self.packer()
        with redirect_stderr(io.StringIO()):
            first = smolvm.ensure_artifact(runner, "example/agent:1", (1, 4, 0), self.cache)
            again = smolvm.ensure_artifact(runner, "example/agent:1", (1, 4, 0), self.cache)
        self.assertEqual(first, again)
        self.assertTrue(first.endswith(f"agent-{'ab' * 16}-smolvm1.4.0.smolmachine"), first)
        self.assertEqual(sum(c[:3] == ["smolvm", "pack", "create"] for c in runner.calls), 1)
        self.assertEqual(os.listdir(self.cache), [os.path.basename(first)])  # no launcher stub, no scratch

    def test_failed_pack_leaves_nothing(self) -> None:
        with redirect_stderr(io.StringIO()), self.assertRaises(BottleError) as caught:
            smolvm.ensure_artifact(self.packer(fail=True), "example/agent:1", (1, 4, 0), self.cache)
        self.assertIn("pull image: denied", str(caught.exception))
        self.assertEqual(os.listdir(self.cache), [])

    def test_missing_image(self) -> None:
        runner = ScriptedRunner(lambda a: (1, "", "No such image") if a[:2] == ["docker", "image"] else None)
        with self.assertRaises(RuntimeFailure):
            smolvm.ensure_artifact(runner, "example/agent:1", (1, 4, 0), self.cache)


def fake(state: str, *args: str, version: str | None = None, extra: dict[str, str] | None = None,
         cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = fakes.smolvm_env(state, version)
    env.update(extra or {})
    return subprocess.run(["smolvm", *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


class FakeSmolvmTest(unittest.TestCase):
    def setUp(self) -> None:
        self.state = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.state, True)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.state, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def artifact(self) -> str:
        self.assertEqual(fake(self.state, "pack", "create", "--image", "img:1", "-o", f"{self.state}/a").returncode, 0)
        return f"{self.state}/a.smolmachine"

    def test_version(self) -> None:
        self.assertEqual(fake(self.state, "--version").stdout, "smolvm 1.4.0\n")
        self.assertEqual(fake(self.state, "--version", version="0.8.0").stdout, "smolvm 0.8.0\n")

    def test_unknown_smolfile_keys_rejected(self) -> None:
        cases = {
            "env = []\nimage_id = \"x\"\n": ("unknown field `image_id`, expected one of `image`, `entrypoint`", 2),
            "[network]\nallow_cidrs = []\ndeny_cidrs = []\n": (
                "unknown field `deny_cidrs`, expected `allow_hosts` or `allow_cidrs`", 3),
            "[auth]\nssh = true\n": ("unknown field `ssh`, expected `ssh_agent`", 2),
            "env = \"A=1\"\n": ("invalid type: string \"A=1\", expected a sequence of strings", 1),
        }
        for text, (message, line) in cases.items():
            with self.subTest(text=text):
                path = self.write("bad.smolfile", text)
                result = fake(self.state, "machine", "create", "vm", "--smolfile", path)
                self.assertEqual(result.returncode, 1)
                self.assertIn(f"Error: parse smolfile: {path}: TOML parse error at line {line}", result.stderr)
                self.assertIn(message, result.stderr)
                self.assertEqual(fake(self.state, "machine", "ls", "--json").stdout.strip(), "[]")

    def test_project_smolfile_accepted(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            plan = plan_mod.build(make_manifest(folder), "0123abcd", state_dir=folder)
        path = self.write("ok.smolfile", plan.smolfile or "")
        result = fake(self.state, "machine", "create", "vm", "--from", self.artifact(), "--smolfile", path)
        self.assertEqual(result.returncode, 0, result.stderr)
        (record,) = fakes.smolvm_machines(self.state)
        self.assertEqual(record["allowed_cidrs"], [f"{plan.bundle_ip}/32"])
        self.assertEqual(record["env"], [f"{k}={v}" for k, v in plan.agent_env])

    def test_clap_errors(self) -> None:
        for args, message in ((["machine", "create", "vm", "--allow-cidrs", "x"], "argument '--allow-cidrs'"),
                              (["machine", "start", "--name"], "a value is required for '--name <NAME>'"),
                              (["machine", "exec", "--name", "vm"], "required arguments were not provided"),
                              (["machine", "bogus"], "unrecognized subcommand 'bogus'"),
                              (["machine", "delete"], "required arguments were not provided")):
            with self.subTest(args=args):
                result = fake(self.state, *args)
                self.assertEqual(result.returncode, 2)
                self.assertTrue(result.stderr.startswith("error: "), result.stderr)
                self.assertIn(message, result.stderr)

    def test_from_conflicts_knob(self) -> None:
        path = self.write("ok.smolfile", "env = []\n")
        result = fake(self.state, "machine", "create", "vm", "--from", self.artifact(), "--smolfile", path,
                      extra={"FAKE_SMOLVM_FROM_CONFLICTS": "1"})
        self.assertEqual(result.returncode, 2)
        self.assertIn("the argument '--from <PATH>' cannot be used with '--smolfile <PATH>'", result.stderr)

    def test_lifecycle_env_volumes_and_call_log(self) -> None:
        host = os.path.join(self.state, "ca")
        os.mkdir(host)
        self.write("ca/ca.pem", PEM)
        path = self.write("ok.smolfile", 'env = ["A=1", "SSL_CERT_FILE=/etc/claude-bottle/ca.pem"]\n\n'
                                         '[network]\nallow_cidrs = ["192.168.5.2/32"]\n')
        created = fake(self.state, "machine", "create", "vm", "--from", self.artifact(), "--smolfile", path,
                       "-v", f"{host}:/etc/claude-bottle:ro")
        self.assertEqual(created.returncode, 0, created.stderr)
        self.assertEqual(fake(self.state, "machine", "start", "--name", "vm").returncode, 0)
        listed = json.loads(fake(self.state, "machine", "ls", "--json").stdout)
        self.assertEqual([(m["name"], m["state"]) for m in listed], [("vm", "running")])
        secret = {"SECRET_FROM_HOST": "must-not-leak"}
        script = 'env; cat "$SSL_CERT_FILE"; exit 9'
        ran = fake(self.state, "machine", "exec", "--name", "vm", "-i", "-e", "B=2", "--", "sh", "-c", script,
                   extra=secret)
        self.assertEqual(ran.returncode, 9)
        names = {line.split("=", 1)[0] for line in ran.stdout.splitlines() if "=" in line and "CERT" not in line[:5]}
        self.assertEqual(names - {"PWD", "SHLVL", "_"}, {"A", "B", "PATH", "SSL_CERT_FILE"})
        self.assertIn(f"SSL_CERT_FILE={host}/ca.pem", ran.stdout)
        self.assertIn(PEM, ran.stdout)
        self.assertEqual(fake(self.state, "machine", "delete", "vm", "-f").returncode, 1)  # still running
        self.assertEqual(fake(self.state, "machine", "stop", "--name", "vm").returncode, 0)
        self.assertEqual(fake(self.state, "machine", "delete", "vm").returncode, 1)  # no confirmation, no -f
        self.assertEqual(fake(self.state, "machine", "delete", "vm", "-f").returncode, 0)
        self.assertEqual(fake(self.state, "machine", "ls").stdout, "No machines found\n")
        self.assertEqual(fake(self.state, "machine", "start", "--name", "vm").stderr, "Error: machine 'vm' not found\n")
        calls = fakes.smolvm_calls(self.state)
        self.assertEqual(calls[0][:3], ["pack", "create", "--image"])
        self.assertEqual([c[:2] for c in calls[1:4]], [["machine", "create"], ["machine", "start"], ["machine", "ls"]])

    def test_volume_must_exist(self) -> None:
        result = fake(self.state, "machine", "create", "vm", "-v", "/nonexistent/x:/etc/x:ro")
        self.assertEqual(result.returncode, 1)
        self.assertIn("host path does not exist", result.stderr)


class StartWithFakeTest(unittest.TestCase):
    """smolvm.start end to end: the fake smolvm for real (a subprocess), Docker scripted."""

    def test_start(self) -> None:
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder, True)
        fake_state = os.path.join(folder, "fake")
        state = os.path.join(folder, "state")
        manifest = make_manifest(folder, command=["sh", "-c", 'env > env.txt; cat "$SSL_CERT_FILE" > ca.txt; exit 5'])
        real = SubprocessRunner()

        class Hybrid(ScriptedRunner):
            def run(self, command: Sequence[str], **kw: object) -> Result:
                if command[0] == "smolvm":
                    self.calls.append(list(command))
                    return real.run(command, timeout=60)
                return super().run(command)

            def attach(self, command: Sequence[str], **_: object) -> int:
                self.calls.append(list(command))
                return real.attach(command)

        runner = Hybrid()
        env = fakes.smolvm_env(fake_state)
        with mock.patch.dict(os.environ, {"PATH": env["PATH"], "FAKE_SMOLVM_STATE": fake_state}), \
                mock.patch.object(smolvm, "check_hypervisor"), redirect_stderr(io.StringIO()):
            code = start(manifest, (), runner, state)
            again = start(manifest, ("true",), runner, state)
        self.assertEqual((code, again), (5, 0))
        ws = manifest.workspace or ""
        with open(os.path.join(ws, "ca.txt"), encoding="ascii") as handle:
            self.assertEqual(handle.read(), PEM)
        with open(os.path.join(ws, "env.txt"), encoding="utf-8") as handle:
            guest = dict(line.split("=", 1) for line in handle.read().splitlines() if "=" in line)
        self.assertTrue(guest["HTTPS_PROXY"].startswith("http://192.168."), guest)
        self.assertEqual(guest["CLAUDE_BOTTLE"], "demo-vm")
        calls = fakes.smolvm_calls(fake_state)
        self.assertEqual(sum(c[:2] == ["pack", "create"] for c in calls), 1)  # the second start reused it
        self.assertEqual(fakes.smolvm_machines(fake_state), [])
        # Per-session files are gone; the artifact cache and the sessions' audit logs stay.
        self.assertEqual(sorted(os.listdir(state)), [paths.SESSIONS_DIR, paths.SMOLVM_CACHE_DIR])


if __name__ == "__main__":
    unittest.main()
