#!/usr/bin/env python3
"""Runs a command inside an image's root filesystem the way a locked-down container
runtime would, for deploy/test-image.sh where `podman run` may lack privileges: in a
new mount and PID namespace (run it under `unshare --mount --pid --fork`), the root
bind-mounted read-only, a tmpfs owned by the user on each --tmpfs path, files bound
read-only with --bind, every capability dropped (bounding set, then the rest by
leaving uid 0) and no_new_privs set, as UID:GID.

    chroot_run.py --root DIR --user 65532:65532 [--tmpfs PATH]... [--bind SRC:DST]... -- CMD...
"""
import argparse
import ctypes
import os
import subprocess
import sys

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--user", required=True, help="UID:GID")
    ap.add_argument("--tmpfs", action="append", default=[])
    ap.add_argument("--bind", action="append", default=[], help="SRC:DST, read-only")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("command", nargs="+")
    a = ap.parse_args()
    uid, gid = (int(x) for x in a.user.split(":"))
    root = os.path.realpath(a.root)

    mount("--make-rprivate", "/")
    mount("--bind", root, root)
    mount("-o", "remount,bind,ro", root)
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    mount("-t", "tmpfs", "-o", "nosuid,mode=0755,size=1m", "tmpfs", f"{root}/dev")
    for dev in ("null", "zero", "random", "urandom"):
        open(f"{root}/dev/{dev}", "w").close()
        mount("--bind", f"/dev/{dev}", f"{root}/dev/{dev}")
    for path in a.tmpfs:
        mount("-t", "tmpfs", "-o", f"nosuid,nodev,mode=0750,uid={uid},gid={gid},size=16m", "tmpfs",
              f"{root}{path}")
    for spec in a.bind:
        src, dst = spec.split(":", 1)
        mount("--bind", src, f"{root}{dst}")
        mount("-o", "remount,bind,ro", f"{root}{dst}")

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    # Empty the bounding set while still root (CAP_SETPCAP); leaving uid 0 then clears
    # the permitted and effective sets, and no_new_privs stops setuid files from
    # giving anything back.
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last_cap + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    os.chroot(root)
    os.chdir(a.workdir)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/var/lib/egressd"}
    env.update(e.split("=", 1) for e in a.env)
    os.execve(a.command[0], a.command, env)
    return 127


if __name__ == "__main__":
    sys.exit(main())
